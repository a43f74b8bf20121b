# Ray doc: "Anti-pattern: Serialize ray.ObjectRef out of band"
import os
import tempfile

import microray as ray
from microray import cloudpickle

ray.init(num_cpus=2)

FILE = os.path.join(tempfile.mkdtemp(), "ref.pkl")


@ray.remote
def out_of_band_serialization_ray_cloudpickle():
    obj_ref = ray.put(1)
    with open(FILE, "wb") as f:
        cloudpickle.dump(obj_ref, f)
    # The ref lives on because it was serialized out of band.
    return obj_ref


ray.get(out_of_band_serialization_ray_cloudpickle.remote())
with open(FILE, "rb") as f:
    result = ray.get(cloudpickle.load(f))
assert result == 1
os.unlink(FILE)
os.rmdir(os.path.dirname(FILE))
print("ok")
ray.shutdown()
