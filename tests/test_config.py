from pathlib import Path

import pytest
import yaml

from recsys_spark.app.cli import main
from recsys_spark.config import Config, ConfigError, load_config
from recsys_spark.storage.readers import load_config_file

ROOT = Path(__file__).resolve().parents[1]


def test_local_yaml_spells_out_the_defaults():
    assert load_config_file(str(ROOT / "conf" / "local.yaml")).to_dict() == Config().to_dict()
    spelled = yaml.safe_load((ROOT / "conf" / "local.yaml").read_text())
    assert spelled == Config().to_dict()  # every key, not only the values that differ


def test_every_shipped_conf_file_is_valid():
    for path in sorted((ROOT / "conf").glob("*.yaml")):
        load_config_file(str(path))


def test_overrides_are_typed():
    cfg = load_config(None, ["model.kind=popularity", "score.top_n=25", "input.header=false", "input.names=[a, b]"])
    assert (cfg.model.kind, cfg.score.top_n, cfg.input.header, cfg.input.names) == ("popularity", 25, False, ["a", "b"])


@pytest.mark.parametrize("override, message", [
    ("model.kind=magic", "model.kind must be one of"),
    ("score.top_n=0", "score.top_n must be >= 1"),
    ("score.top_n=ten", "score.top_n must be an integer"),
    ("score.precision=fp8", "score.precision must be one of"),
    ("scoring.top_n=3", "unknown config key scoring"),
    ("model.als.max_iters=3", "unknown config key model.als.max_iters"),
    ("input.header=maybe", "input.header must be true or false"),
    ("no_equals_sign", "--set takes section.key=value"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_config_file_fails_before_spark(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"score": {"top_n": -1}}))
    assert main(["run", "--conf", str(bad), "--input", "x"]) == 2
    assert "score.top_n must be >= 1" in capsys.readouterr().err


def test_bad_run_date_is_rejected(capsys):
    assert main(["run", "--run-date", "../../etc", "--input", "x"]) == 2
    assert "run date must be YYYY-MM-DD" in capsys.readouterr().err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "prepare", "train", "score", "similar", "publish", "clean", "evaluate", "tune"):
        assert command in out


def test_local_yaml_is_generated_from_the_current_defaults():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "write_local_conf.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
