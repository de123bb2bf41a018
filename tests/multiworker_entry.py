"""`python train.py ARGS` plus a record of every training step, for tests/test_multiworker.py.

Usage: `python tests/multiworker_entry.py RECORD.json [train.py flags...]`. The flags go to
train.py's own `main`, unchanged; the only addition is a callback appended to every fit
(through `trainer.fit_callbacks`) that writes RECORD.json (a path outside `--workdir`):

    {"task": TF_CONFIG's task or null, "replicas": replicas in sync, "step_losses": [...],
     "weights_sha256": hash of the trained weights' bytes, "weights_sum": sum of |w|,
     "seconds": wall time of fit, "steps": steps trained,
     "step_ends": time.perf_counter() after each step, "step_cpu": time.process_time() then
     (both for benchmarks/multiworker_throughput.py),
     "workdirs": [[workdir, where this process wrote it], ...] (distribute.worker_workdir)}

Keras reports the running mean of the epoch's loss after each batch; the record holds
each step's own loss, recovered from the running means (the first step's is exact).
"""

import hashlib
import json
import os
import runpy
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    record_path, flags = sys.argv[1], sys.argv[2:]
    sys.path.insert(0, REPO)
    # Importing keras/TensorFlow executes no op, so train.py can still configure threads
    # and create MultiWorkerMirroredStrategy first.
    import keras
    import numpy as np
    import tensorflow as tf

    from midg_keras.training import distribute, trainer

    workdirs = []  # where this process wrote each workdir it was given
    original_worker_workdir = distribute.worker_workdir

    def worker_workdir(workdir, config, strategy):
        local = original_worker_workdir(workdir, config, strategy)
        workdirs.append([os.path.abspath(workdir), os.path.abspath(local)])
        return local

    distribute.worker_workdir = worker_workdir

    class StepRecord(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.losses, self.step_ends, self.step_cpu = [], [], []
            self.seconds, self.started = 0.0, None

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_means = []

        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            mean, count = float(logs["loss"]), len(self.epoch_means) + 1
            previous = self.epoch_means[-1] if self.epoch_means else 0.0
            self.losses.append(mean * count - previous * (count - 1))
            self.epoch_means.append(mean)
            self.step_ends.append(time.perf_counter())
            self.step_cpu.append(time.process_time())

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.started
            weights = [np.asarray(w.numpy()) for w in self.model.trainable_weights]
            digest = hashlib.sha256(b"".join(w.tobytes() for w in weights)).hexdigest()
            task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task")
            record.update(
                {
                    "task": task,
                    "replicas": tf.distribute.get_strategy().num_replicas_in_sync,
                    "step_losses": self.losses,
                    "steps": len(self.losses),
                    "weights_sha256": digest,
                    "weights_sum": float(sum(np.abs(w).sum() for w in weights)),
                    "seconds": self.seconds,
                    "step_ends": self.step_ends,
                    "step_cpu": self.step_cpu,
                }
            )

    original = trainer.fit_callbacks

    def fit_callbacks(model, config, steps):
        return [*original(model, config, steps), StepRecord()]

    trainer.fit_callbacks = fit_callbacks
    sys.argv = [os.path.join(REPO, "train.py"), *flags]
    record = {}
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:  # app.run ends with sys.exit; the workdirs of the results summary count too
        if record:
            record["workdirs"] = workdirs
            with open(record_path, "w") as f:
                json.dump(record, f)


if __name__ == "__main__":
    main()
