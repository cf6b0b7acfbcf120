import time, faulthandler, sys
from loader_helpers import loader
from lerowds import LeRobotWebDataset, mix
from lerowds.errors import ConfigError

def init(w):
    faulthandler.dump_traceback_later(4, file=open(f"/tmp/mixt/w{w}.txt", "w"))

def test_q(tabular_converted):
    b = "/tmp/mixt/b/out"
    tiny = LeRobotWebDataset(tabular_converted, episodes=[1])
    ds = mix({"tiny": tiny, "b": LeRobotWebDataset(b)}, [0.5, 0.5], samples_per_epoch=40)
    t = time.time()
    def f():
        try:
            list(loader(ds, batch_size=4, num_workers=2, worker_init_fn=init))
        except ConfigError as e:
            return str(e)
    faulthandler.dump_traceback_later(3, file=open("/tmp/mixt/main.txt", "w"))
    f()
    print("err", time.time() - t)
