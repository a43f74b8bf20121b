# Ray doc: "Task Fault Tolerance" - max_retries and retry_exceptions
import os

import microray as ray

ray.init(num_cpus=2)

MARK = f"/tmp/microray_doc_retry_{os.getpid()}"


@ray.remote(max_retries=1)
def potentially_fail(failure_probability_marker):
    # Fails (process exit) the first time only.
    if not os.path.exists(failure_probability_marker):
        open(failure_probability_marker, "w").close()
        os._exit(0)
    return 0


assert ray.get(potentially_fail.remote(MARK)) == 0
os.unlink(MARK)


class RandomError(Exception):
    pass


@ray.remote(max_retries=1, retry_exceptions=True)
def potentially_raise(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RandomError("Failed!")
    return 0


assert ray.get(potentially_raise.remote(MARK)) == 0
os.unlink(MARK)

# Only retry on RandomError: another exception type is not retried.
@ray.remote(max_retries=2, retry_exceptions=[RandomError])
def raise_value_error():
    raise ValueError("not retried")


try:
    ray.get(raise_value_error.remote())
except ValueError as e:
    print("not retried:", e)
else:
    raise AssertionError
print("ok")
ray.shutdown()
