"""The main job (``python -m minirnn``): an RNNClassifier on a small real dataset, end to end.

Data: the UCI Japanese Vowels set shipped with minirnn (:mod:`minirnn.datasets`): nine speakers,
utterances of 7 to 29 frames of 12 LPC coefficients; name the speaker. The job trains an LSTM
``RNNClassifier`` (labels are the speaker names, through ``label_vocabulary``), evaluates it on the
370 held-out utterances, shows a few predictions, exports the model and checks that the exported
bundle predicts the same. One seed drives everything, so two runs print the same numbers.
"""

import argparse
import logging
import os
import sys
import tempfile
import time

import numpy as np

SPEAKERS = [f"speaker{i}" for i in range(1, 10)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minirnn",
                                     description="Train, evaluate, predict and export an LSTM RNNClassifier on the "
                                                 "Japanese Vowels speaker-recognition data shipped with minirnn.")
    parser.add_argument("--steps", type=int, default=400, help="training steps (default 400)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", default=None, help="checkpoints go here (default: a new temporary folder)")
    parser.add_argument("--quiet", action="store_true", help="print only the final metrics")
    args = parser.parse_args(argv)

    import minirnn
    from minirnn import feature_column as fc
    from minirnn.datasets import load_japanese_vowels
    from minirnn.inputs import numpy_input_fn
    from minirnn.optimizers import Adam

    say = (lambda *a: None) if args.quiet else print
    handler = None
    if not args.quiet:                                   # show the estimator's progress lines
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("  %(message)s"))
        logging.getLogger("minirnn").addHandler(handler)
        logging.getLogger("minirnn").setLevel(logging.INFO)
    temporary = None if args.model_dir else tempfile.TemporaryDirectory(prefix="minirnn_main_")
    try:
        data = load_japanese_vowels()
        (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
        names = np.array(SPEAKERS, dtype=object)
        say(f"data: Japanese Vowels (UCI, CC BY 4.0): {len(x_train)} training and {len(x_test)} test utterances "
            f"of 7-29 frames x 12 LPC coefficients, {len(SPEAKERS)} speakers")
        model_dir = args.model_dir or temporary.name
        clf = minirnn.RNNClassifier(
            sequence_feature_columns=[fc.sequence_numeric_column("lpc", shape=(12,))],
            units=[args.units], cell_type="lstm", n_classes=len(SPEAKERS), label_vocabulary=SPEAKERS,
            optimizer=Adam(learning_rate=0.01), model_dir=model_dir,
            config=minirnn.RunConfig(random_seed=args.seed, log_step_count_steps=100))
        train_input = numpy_input_fn({"lpc": x_train}, names[y_train], batch_size=args.batch_size,
                                     num_epochs=None, shuffle=True, seed=args.seed)
        test_input = numpy_input_fn({"lpc": x_test}, names[y_test], batch_size=128, shuffle=False)

        say(f"training an LSTM({args.units}) RNNClassifier for {args.steps} steps, batch {args.batch_size}; "
            f"checkpoints in {model_dir}" + (" (removed at the end; --model-dir keeps them)" if temporary else ""))
        start = time.perf_counter()
        clf.train(train_input, steps=args.steps)
        say(f"trained {args.steps} steps in {time.perf_counter() - start:.1f}s "
            "(the first step includes kernel compilation or loading the compiled cache)")

        metrics = clf.evaluate(test_input)
        print(f"evaluation on {len(x_test)} test utterances: accuracy {metrics['accuracy']:.3f}, "
              f"average_loss {metrics['average_loss']:.4f}, global_step {int(metrics['global_step'])}")

        pick = np.linspace(0, len(x_test) - 1, 5).astype(int)          # five utterances across the speakers
        few = [x_test[k] for k in pick]
        predictions = list(clf.predict(numpy_input_fn({"lpc": few}, shuffle=False)))
        say("predictions:")
        for k, p in zip(pick, predictions):
            say(f"  {len(x_test[k]):2d} frames  true {SPEAKERS[y_test[k]]}  predicted {p['classes'][0].decode()}  "
                f"(probability {p['probabilities'].max():.2f})")

        export_dir = clf.export_saved_model(os.path.join(model_dir, "export"))
        exported = minirnn.load_exported(export_dir)
        served = exported.classify([{"lpc": x} for x in few])["scores"]
        same = np.allclose(served, np.stack([p["probabilities"] for p in predictions]), rtol=0, atol=1e-6)
        say(f"exported to {os.fsdecode(export_dir)}; signatures {exported.signatures}; the exported model "
            f"{'predicts the same' if same else 'DIFFERS'}")
        if not same:
            raise SystemExit("the exported model's predictions differ from the estimator's")
        return {k: float(v) for k, v in metrics.items()}
    finally:
        if handler is not None:
            logging.getLogger("minirnn").removeHandler(handler)
        if temporary is not None:
            temporary.cleanup()


if __name__ == "__main__":
    main()
