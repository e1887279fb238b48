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
    for command in ("run", "prepare", "train", "score", "similar", "publish", "clean", "evaluate", "tune", "sql"):
        assert command in out


def test_local_yaml_is_generated_from_the_current_defaults():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "write_local_conf.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("yaml_text, override", [
    ("publish: {umask: 027}", None),  # YAML 1.1 would read this as the octal number 23
    (None, "publish.umask=027"),
    (None, "publish.umask=27"),  # digits are octal, as for the shell's umask command
    (None, "publish.umask='027'"),
    (None, "publish.umask=0o27"),
    (None, "publish.umask=0027"),
])
def test_umask_is_read_as_the_octal_digits_written(tmp_path, yaml_text, override):
    path = None
    if yaml_text:
        path = tmp_path / "umask.yaml"
        path.write_text(yaml_text)
    cfg = load_config_file(str(path) if path else None, [override] if override else [])
    assert (cfg.publish.umask, cfg.publish.umask_bits) == ("027", 0o027)


@pytest.mark.parametrize("override, message", [
    ("publish.umask=028", "digits 0-7"),
    ("publish.umask=12345", "digits 0-7"),
    ("publish.umask=022", "must deny others read"),
    ("publish.umask=23", "must deny others read"),
])
def test_ambiguous_or_open_umask_is_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_leading_zero_numbers_stay_as_written(tmp_path):
    conf = tmp_path / "ids.yaml"
    conf.write_text("input: {header: false, names: [007, item, 010]}\n")
    assert load_config_file(str(conf)).input.names == ["007", "item", "010"]
    with pytest.raises(ConfigError, match="score.top_n: 010 has a leading zero"):
        load_config(None, ["score.top_n=010"])


def test_set_spark_conf_key_merges_one_entry_into_the_defaults(tmp_path):
    defaults = Config().spark.conf
    cfg = load_config(None, ["spark.conf.spark.driver.memory=2g", "spark.conf.spark.sql.adaptive.enabled=true"])
    assert cfg.spark.conf == {**defaults, "spark.driver.memory": "2g", "spark.sql.adaptive.enabled": True}
    conf = tmp_path / "spark.yaml"
    conf.write_text("spark:\n  conf:\n    spark.executor.cores: 2\n    spark.sql.shuffle.partitions: null\n")
    cfg = load_config_file(str(conf), ["spark.conf={spark.ui.enabled: false}"])
    assert cfg.spark.conf == {"spark.driver.memory": "4g", "spark.executor.cores": 2, "spark.ui.enabled": False}
    assert load_config(None, ["tune.params.model.wals.reg=[0.01, 0.1]"]).tune.params == {"model.wals.reg": [0.01, 0.1]}


@pytest.mark.parametrize("override, message", [
    ("spark.conf.driver.memory=2g", "whole Spark keys"),
    ("spark.conf={spark: {driver: {memory: 2g}}}", "must be a string, number or boolean"),
    ("spark.conf.spark.hadoop.fs.s3a.secret.key=***", "redaction marker"),
])
def test_bad_spark_conf_entries_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_secret_looking_keys_are_redacted_in_the_record():
    from recsys_spark.config.secrets import is_secret_key

    secret = ["spark.hadoop.fs.s3a.secret.key", "spark.hadoop.fs.s3a.access.key", "spark.ssl.keyPassword",
              "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net", "spark.executorEnv.API_KEY",
              "spark.hadoop.fs.s3a.session.token", "spark.authenticate.secret", "spark.x.accessKey",
              "spark.hadoop.google.cloud.auth.service.account.credentials"]
    plain = ["spark.driver.memory", "spark.kerberos.keytab", "spark.sql.shuffle.partitions", "spark.monkey.size"]
    assert [k for k in secret if not is_secret_key(k)] == [] and [k for k in plain if is_secret_key(k)] == []
    cfg = load_config(None, ["spark.conf.spark.hadoop.fs.s3a.secret.key=hunter2"])
    assert cfg.spark.conf["spark.hadoop.fs.s3a.secret.key"] == "hunter2"  # the session still gets it
    record = cfg.to_record()
    assert record["spark"]["conf"]["spark.hadoop.fs.s3a.secret.key"] == "***"
    assert record["spark"]["conf"]["spark.driver.memory"] == "4g"
    assert "hunter2" not in repr(record)


def test_config_errors_never_echo_a_secret():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["spark.conf.spark.hadoop.fs.s3a.secret.key=[hunter2]"])
    assert "hunter2" not in str(error.value) and "spark.hadoop.fs.s3a.secret.key" in str(error.value)
    with pytest.raises(ConfigError) as error:
        load_config(None, ["spark.conf=[spark.password=hunter2]"])
    assert "hunter2" not in str(error.value)
