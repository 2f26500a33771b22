"""Checks shared by the experiment scripts' tests."""

import pytest


def refusal(main, argv, tmp_path, capsys, monkeypatch) -> str:
  """Runs ``main(argv)`` expecting a refusal before any data; returns the one stderr line.

  Asserts exit status 2, exactly one line on stderr (no traceback), MNIST never loaded
  and no output folder made.
  """
  def no_data(*args, **kwargs):
    raise AssertionError("MNIST was loaded despite a bad flag")

  monkeypatch.setattr("jaxloss.train.load_mnist", no_data)
  with pytest.raises(SystemExit) as exit_info:
    main([*argv, "--out", str(tmp_path / "out"), "--no-progress"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "Traceback" not in err[0], err
  assert not (tmp_path / "out").exists()
  return err[0]
