# Ray doc: "Serialization" - customizing serialization (__reduce__, register_serializer)
import threading

import microray as ray
import microray.util

ray.init(num_cpus=2)


class DBConnection:
    def __init__(self, path):
        self.path = path
        self.conn = threading.Lock()  # not picklable

    def __reduce__(self):
        deserializer = DBConnection
        serialized_data = (self.path,)
        return deserializer, serialized_data


original = DBConnection("/tmp/db")
assert ray.get(ray.put(original)).path == "/tmp/db"


class A:
    def __init__(self, x):
        self.x = x
        self.lock = threading.Lock()


def custom_serializer(a):
    return a.x


def custom_deserializer(b):
    return A(b)


ray.util.register_serializer(A, serializer=custom_serializer, deserializer=custom_deserializer)
assert ray.get(ray.put(A(1))).x == 1
ray.util.deregister_serializer(A)
try:
    ray.put(A(1))
except TypeError:
    print("unserializable after deregister, as documented")
print("ok")
ray.shutdown()
