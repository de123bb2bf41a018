"""What the hand-run benchmarks share: stock-shaped MOSI-unaligned data and a timed fit."""

import os
import time

from tests.fake_mmsa import STOCK_DIMS, STOCK_LENGTHS, make_fake_mmsa, write_pickle


def write_mosi_unaligned_pickle(directory, samples, batch_size, av_length=0):
    """An MMSA-layout pickle with MOSI-unaligned dims and lengths; returns its path.

    `av_length` > 0 replaces the padded audio and vision lengths (375, 500) by it.
    """
    path = os.path.join(directory, "mosi_unaligned_50.pkl")
    lengths = dict(STOCK_LENGTHS["mosi_unaligned"])
    if av_length:
        lengths.update(audio=av_length, vision=av_length)
    write_pickle(
        make_fake_mmsa(
            "mosi_unaligned",
            sizes=(samples, batch_size, batch_size),
            dims=STOCK_DIMS["mosi_unaligned"],
            lengths=lengths,
        ),
        path,
    )
    return path


def mosi_unaligned_data(directory, samples, batch_size, av_length=0, **flags):
    """(config, data): a MOSI-unaligned-shaped pickle read through the path train.py takes.

    Writes the pickle into `directory` (`write_mosi_unaligned_pickle`), validates a `Config`
    reading it (`flags`: any other `Config` fields), sets its threads as train.py does
    first, prepares the data and seeds Keras with 0, so the model built next is the same in
    every benchmark run.
    """
    import keras

    from midg_keras.config import Config
    from midg_keras.data.pipeline import prepare_data
    from midg_keras.training import runtime

    path = write_mosi_unaligned_pickle(directory, samples, batch_size, av_length)
    config = Config(source=f"pickle:{path}", batch_size=batch_size, verbose=0, **flags)
    config = config.validate()
    runtime.configure_threads(config)
    data = prepare_data(config)
    keras.utils.set_random_seed(0)
    return config, data


def timed_fit(model, train, steps, warmup_steps=3, callbacks=()):
    """Seconds of a warm-up fit that traces the step, of a fit of `steps` timed steps, and of
    that fit's teardown: from its last step to its return.

    The timed figure is the whole `fit`, as a user waits for it; the teardown says how much
    of it was not training (tf.data's autotuner once held it for up to 38 s of idle; design
    §11). A teardown above a second is worth a look.
    """
    import keras

    class LastStepEnd(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.time = time.perf_counter()

    last_step = LastStepEnd()
    start = time.perf_counter()
    model.fit(train, epochs=1, steps_per_epoch=warmup_steps, verbose=0)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(train, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[*callbacks, last_step])
    end = time.perf_counter()
    return warmup, end - start, end - last_step.time
