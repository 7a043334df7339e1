"""The README's main job learns its task and is reproducible."""

from minirnn.demo import main


def test_demo_learns_and_is_deterministic(capsys):
    first = main(["--steps", "300"])
    out = capsys.readouterr().out
    assert "evaluation on 500 test sequences" in out and "predictions:" in out
    assert first["accuracy"] > 0.9            # chance is 1/3
    assert main(["--steps", "300"]) == first  # one seed: identical numbers
