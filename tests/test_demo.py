"""The README's main job learns its task, exports, and is reproducible."""

from minirnn.demo import main


def test_main_job_learns_and_is_deterministic(capsys, tmp_path):
    first = main(["--steps", "300", "--model-dir", str(tmp_path / "a")])
    out = capsys.readouterr().out
    assert "evaluation on 370 test utterances" in out and "predictions:" in out
    assert "the exported model predicts the same" in out
    assert first["accuracy"] > 0.9            # chance is 1/9
    assert main(["--steps", "300", "--model-dir", str(tmp_path / "b"), "--quiet"]) == first   # one seed


def test_main_job_without_model_dir_leaves_no_folder(capsys, tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    main(["--steps", "5"])
    assert "removed at the end" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
