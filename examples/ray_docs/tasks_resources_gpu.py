# Ray doc: "GPU Support" - num_gpus and ray.get_gpu_ids (fake GPU count)
import os

import microray as ray

ray.init(num_cpus=2, num_gpus=2)


@ray.remote(num_gpus=1)
class GPUActor:
    def ping(self):
        return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


@ray.remote(num_gpus=1)
def gpu_task():
    return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


ids, cvd = ray.get(GPUActor.remote().ping.remote())
print(ids, cvd)
assert len(ids) == 1 and cvd == str(ids[0])
ids, cvd = ray.get(gpu_task.remote())
assert len(ids) == 1
print("ok")
ray.shutdown()
