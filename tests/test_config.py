"""Serving configuration: sources and their order, per-runner batching, and the error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from dosirak.config import (
    DEFAULT_DURATION_BUCKETS,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_LATENCY_MS,
    BatchingOptions,
    ServingConfig,
    config_reference,
    config_reference_markdown,
    load_config,
    parse_config_options,
)
from dosirak.exceptions import InvalidArgument

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error_of(**kwargs) -> str:
    with pytest.raises(InvalidArgument) as caught:
        load_config(**kwargs)
    return str(caught.value)


def options(text: str) -> ServingConfig:
    return load_config(environ={"DOSIRAK_CONFIG_OPTIONS": text})


# --- sources -------------------------------------------------------------------------------------


def test_defaults_without_any_source(monkeypatch):
    monkeypatch.delenv("DOSIRAK_CONFIG", raising=False)
    monkeypatch.delenv("DOSIRAK_CONFIG_OPTIONS", raising=False)
    config = load_config()
    server = config.api_server
    assert (server.host, server.port, server.workers, server.timeout) == ("127.0.0.1", 3000, 1,
                                                                         60.0)
    assert server.max_concurrency == "auto"
    assert server.max_request_size == 20 * 1024 * 1024
    assert server.backlog == 2048
    assert server.cors.enabled is False
    assert config.metrics.enabled and config.metrics.namespace == "dosirak"
    assert config.metrics.duration_buckets == list(DEFAULT_DURATION_BUCKETS)
    assert config.logging.access.enabled and config.logging.access.format == "text"
    assert config.logging.prediction.enabled is False
    assert config.runners.by_name == {}


def test_one_default_batch_size_and_latency_for_the_configuration_and_the_runner_layer():
    import dosirak
    from dosirak.runner.dispatcher import Dispatcher

    class Doubler(dosirak.Runnable):
        @dosirak.Runnable.method(batchable=True)
        def double(self, x):
            return x * 2

    async def execute(args, kwargs):
        return args[0]

    # What a runner, a dispatcher and the configuration use when nobody says otherwise.
    assert dosirak.Runner(Doubler).double.max_batch_size == DEFAULT_MAX_BATCH_SIZE == 100
    assert Dispatcher(execute, max_batch_size=4).max_latency_ms == DEFAULT_MAX_LATENCY_MS
    assert load_config(environ={}).runners.batching_for("doubler", "double") == \
        BatchingOptions(True, DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_LATENCY_MS)


def test_yaml_file_from_argument_and_from_environment(tmp_path, monkeypatch):
    config_file = write(tmp_path / "serving.yaml", """
api_server:
  port: 8080
  workers: 3
  max_request_size: 10MiB
  cors:
    enabled: true
    allow_origins: "https://app.example.com"
metrics:
  namespace: shop
logging:
  access:
    format: json
""")
    config = load_config(config_file, environ={})
    assert (config.api_server.port, config.api_server.workers) == (8080, 3)
    assert config.api_server.max_request_size == 10 * 1024 * 1024
    assert config.api_server.cors.allow_origins == ["https://app.example.com"]
    assert config.metrics.namespace == "shop"
    assert config.logging.access.format == "json"
    # Unset keys keep their defaults.
    assert config.api_server.host == "127.0.0.1"

    monkeypatch.setenv("DOSIRAK_CONFIG", str(config_file))
    monkeypatch.delenv("DOSIRAK_CONFIG_OPTIONS", raising=False)
    assert load_config() == config
    # An explicit --config wins over the variable.
    other = write(tmp_path / "other.yaml", "api_server: {port: 9000}\n")
    assert load_config(other).api_server.port == 9000


def test_empty_file_is_all_defaults(tmp_path):
    assert load_config(write(tmp_path / "empty.yaml", "# nothing yet\n"), environ={}) == \
        ServingConfig()


def test_order_defaults_file_environment_overrides(tmp_path):
    config_file = write(tmp_path / "c.yaml", "api_server:\n  port: 4000\n  workers: 2\n"
                                              "  timeout: 5\n")
    environ = {"DOSIRAK_CONFIG": str(config_file),
               "DOSIRAK_CONFIG_OPTIONS": "api_server.workers=4 api_server.timeout=7.5"}
    config = load_config(environ=environ, overrides={"api_server.timeout": 9})
    assert config.api_server.port == 4000           # file
    assert config.api_server.workers == 4           # environment over file
    assert config.api_server.timeout == 9.0         # overrides over environment
    assert config.api_server.backlog == 2048        # default


def test_config_options_syntax():
    assert parse_config_options("") == {}
    parsed = parse_config_options(
        "api_server.workers=2 runners.batching.enabled=false api_server.max_concurrency= "
        "api_server.host='0.0.0.0' api_server.cors.allow_origins=[http://a, http://b] "
        "'api_server.cors.allow_headers=[x-a, x-b]' metrics.duration_buckets=[0.1,1] "
        "api_server.timeout=2.5 metrics.namespace=\"my app\" api_server.cors.expose_headers='*' "
        "'logging.access.format=json'")
    assert parsed == {
        "api_server.workers": 2, "runners.batching.enabled": False,
        "api_server.max_concurrency": None, "api_server.host": "0.0.0.0",
        "api_server.cors.allow_origins": ["http://a", "http://b"],
        "api_server.cors.allow_headers": ["x-a", "x-b"],
        "metrics.duration_buckets": [0.1, 1], "api_server.timeout": 2.5,
        "metrics.namespace": "my app", "logging.access.format": "json",
        "api_server.cors.expose_headers": "*",
    }
    with pytest.raises(InvalidArgument, match=r"not a dotted\.key=value pair"):
        parse_config_options("workers 2")
    with pytest.raises(InvalidArgument, match="unclosed ' quote"):
        parse_config_options("api_server.host='unclosed")
    with pytest.raises(InvalidArgument, match=r"value of metrics.duration_buckets .* YAML"):
        parse_config_options("metrics.duration_buckets=[1, 2")


def test_per_runner_and_per_method_keys():
    config = options("runners.batching.max_latency_ms=50 runners.workers=2 "
                     "runners.Iris_CLF.batching.max_batch_size=32 "
                     "runners.iris_clf.methods.predict.max_latency_ms=20 "
                     "runners.iris_clf.workers=3 "
                     "runners.my.model.batching.enabled=false")
    sections = config.runners.by_name
    assert set(sections) == {"iris_clf", "my.model"}  # names fold to lowercase, dots kept
    assert sections["iris_clf"].batching.max_batch_size == 32
    assert sections["iris_clf"].methods["predict"].max_latency_ms == 20.0
    assert config.runners.workers_for("iris_clf") == 3
    assert config.runners.workers_for("other") == 2
    assert config.runners.workers_for("other", default=5) == 5
    assert config.runners.workers_for("IRIS_clf", default=5) == 3
    assert options("").runners.workers_for("x") is None


def test_batching_precedence():
    config = options("runners.batching.max_latency_ms=50 runners.batching.max_batch_size=64 "
                     "runners.iris_clf.batching.max_batch_size=32 "
                     "runners.iris_clf.methods.predict.max_latency_ms=20 "
                     "runners.slow.batching.enabled=false")
    runners = config.runners
    # Method section > runner section > code > config-wide default > built-in.
    assert runners.batching_for("iris_clf", "predict") == BatchingOptions(True, 32, 20.0)
    assert runners.batching_for("iris_clf", "predict", max_batch_size=8,
                                max_latency_ms=5) == BatchingOptions(True, 32, 20.0)
    assert runners.batching_for("iris_clf", "predict_proba") == BatchingOptions(True, 32, 50.0)
    assert runners.batching_for("iris_clf", "predict_proba",
                                max_latency_ms=5) == BatchingOptions(True, 32, 5.0)
    assert runners.batching_for("other", "predict") == BatchingOptions(True, 64, 50.0)
    assert runners.batching_for("other", "predict", max_batch_size=8) == \
        BatchingOptions(True, 8, 50.0)
    assert runners.batching_for("slow", "predict") == BatchingOptions(False, 64, 50.0)
    assert options("").runners.batching_for("any", "predict") == BatchingOptions(
        True, DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_LATENCY_MS)


def test_config_crosses_processes_as_json():
    config = options("api_server.workers=2 runners.iris_clf.methods.predict.max_batch_size=8 "
                     "api_server.max_request_size=1MiB")
    copy = ServingConfig.model_validate_json(config.model_dump_json())
    assert copy == config
    assert copy.runners.batching_for("iris_clf", "predict").max_batch_size == 8


def test_config_is_frozen():
    config = options("")
    with pytest.raises(ValidationError):
        config.api_server.port = 1


# --- errors --------------------------------------------------------------------------------------


def test_unknown_key_names_it_suggests_and_lists_valid_keys(tmp_path):
    message = error_of(environ={"DOSIRAK_CONFIG_OPTIONS": "api_server.wrokers=2"})
    assert "api_server.wrokers" in message
    assert "did you mean 'workers'?" in message
    assert ("valid keys under api_server: auth, backlog, cors, graceful_timeout, host, http, "
            "input_limits, max_concurrency, max_request_size, oip, port, ssl, sync_apis, "
            "timeout, workers") in message
    assert "DOSIRAK_CONFIG_OPTIONS" in message

    config_file = write(tmp_path / "c.yaml", "metrix:\n  enabled: false\n")
    message = error_of(path=config_file, environ={})
    assert "metrix" in message and "did you mean 'metrics'?" in message
    assert ("valid keys at the top level: api_server, logging, metrics, model_store, "
            "monitoring, runners, tracing") in message
    assert f"config file {config_file}" in message


def test_misspelled_runner_setting_is_explained():
    message = error_of(environ={"DOSIRAK_CONFIG_OPTIONS": "runners.batchng.max_batch_size=3"})
    assert "runners.batchng.max_batch_size" in message
    assert "read as a runner named 'batchng' (did you mean 'batching'?)" in message
    message = error_of(environ={"DOSIRAK_CONFIG_OPTIONS": "runners.iris.batchng.max_batch_size=3"})
    assert "runners.iris.batchng" in message and "did you mean 'batching'?" in message
    message = error_of(environ={"DOSIRAK_CONFIG_OPTIONS": "runners.iris.methods.predict.size=3"})
    assert "runners.iris.methods.predict.size" in message
    assert "enabled, max_batch_size, max_latency_ms" in message


@pytest.mark.parametrize(("option", "expected"), [
    ("api_server.port=abc", "api_server.port = 'abc'"),
    ("api_server.port=70000", "less than or equal to 65535"),
    ("api_server.workers=0", "api_server.workers = 0"),
    ("api_server.timeout=-1", "greater than 0"),
    ("api_server.max_request_size=12XB", "could not interpret byte unit: XB"),
    ("api_server.max_concurrency=0", "api_server.max_concurrency = 0"),
    ("api_server.host='a b'", "has spaces"),
    ("api_server.cors.allow_methods=['GE T']", "is not an HTTP method name"),
    ("runners.batching.max_batch_size=0", "runners.batching.max_batch_size = 0"),
    ("runners.batching.max_latency_ms=.inf", "finite number of milliseconds"),
    ("runners.x.methods.predict.max_latency_ms=0", "greater than 0"),
    ("runners.x.workers=two", "runners.x.workers = 'two'"),
    ("metrics.namespace=9lives", "not a Prometheus metric name prefix"),
    ("metrics.duration_buckets=[1,0.5]", "strictly increasing"),
    ("metrics.duration_buckets=[0,1]", "finite numbers of seconds > 0"),
    ("metrics.duration_buckets=[]", "at least one finite upper bound"),
    ("logging.access.format=xml", "Input should be 'text' or 'json'"),
    ("logging.prediction.enabled=maybe", "logging.prediction.enabled = 'maybe'"),
])
def test_bad_values_name_key_value_and_rule(option, expected):
    message = error_of(environ={"DOSIRAK_CONFIG_OPTIONS": option})
    assert message.startswith("invalid configuration:")
    assert expected in message
    assert "(from DOSIRAK_CONFIG_OPTIONS)" in message


def test_bad_value_message_carries_the_setting_description():
    message = error_of(environ={"DOSIRAK_CONFIG_OPTIONS": "api_server.workers=0"})
    assert "greater than or equal to 1" in message
    assert "Setting: API worker processes sharing the listening socket." in message


def test_every_problem_is_reported_at_once_with_its_source(tmp_path):
    config_file = write(tmp_path / "c.yaml", "api_server:\n  port: high\n")
    message = error_of(path=config_file, environ={
        "DOSIRAK_CONFIG_OPTIONS": "api_server.workers=0 metrics.enabledd=true"})
    lines = message.splitlines()[1:]
    assert len(lines) == 3
    assert any("api_server.port = 'high'" in line and str(config_file) in line for line in lines)
    assert any("api_server.workers = 0" in line and "DOSIRAK_CONFIG_OPTIONS" in line
               for line in lines)
    assert any("metrics.enabledd" in line and "did you mean 'enabled'?" in line
               for line in lines)


def test_cors_combinations_browsers_refuse():
    message = error_of(environ={"DOSIRAK_CONFIG_OPTIONS": "api_server.cors.enabled=true"})
    assert "api_server.cors" in message and "allow_origins is empty" in message
    message = error_of(environ={"DOSIRAK_CONFIG_OPTIONS":
                                "api_server.cors.allow_origins='*' "
                                "api_server.cors.allow_credentials=true"})
    assert "cannot be combined with allow_origins '*'" in message
    config = options("api_server.cors.enabled=true api_server.cors.allow_origins='*' "
                     "api_server.cors.allow_methods=[get, post]")
    assert config.api_server.cors.allow_methods == ["GET", "POST"]


def test_buckets_accept_a_trailing_infinity():
    assert options("metrics.duration_buckets=[0.1, 1, .inf]").metrics.duration_buckets == \
        [0.1, 1.0]


def test_unreadable_yaml_names_file_and_line(tmp_path):
    config_file = write(tmp_path / "broken.yaml", "api_server:\n  port: 3000\n  host: [oops\n")
    message = error_of(path=config_file, environ={})
    assert str(config_file) in message and "not valid YAML" in message
    assert "line 4" in message  # the unclosed list runs into the end of the file

    config_file = write(tmp_path / "tabs.yaml", "api_server:\n\tport: 3000\n")
    assert "line 2" in error_of(path=config_file, environ={})


def test_missing_unreadable_and_non_mapping_files(tmp_path):
    message = error_of(path=tmp_path / "nope.yaml", environ={})
    assert "does not exist" in message and "DOSIRAK_CONFIG" in message
    message = error_of(environ={"DOSIRAK_CONFIG": str(tmp_path / "gone.yaml")})
    assert "gone.yaml does not exist" in message
    assert "must hold a mapping" in error_of(path=write(tmp_path / "l.yaml", "- 1\n- 2\n"),
                                             environ={})
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00bad")
    assert "cannot be read" in error_of(path=tmp_path / "binary.yaml", environ={})


def test_setting_inside_a_value_that_is_not_a_section(tmp_path):
    config_file = write(tmp_path / "c.yaml", "api_server:\n  port: 3000\n")
    message = error_of(path=config_file, environ={"DOSIRAK_CONFIG_OPTIONS": "api_server.port.x=1"})
    assert "cannot set api_server.port.x: api_server.port is 3000, not a section" in message
    assert "not a dotted key" in error_of(environ={}, overrides={"api_server..port": 1})


def test_bad_runner_names(tmp_path):
    message = error_of(environ={"DOSIRAK_CONFIG_OPTIONS": "runners.-bad.workers=1"})
    assert "'-bad' is neither a runner setting (batching, placement, workers)" in message
    # Two spellings of one runner in a file: which one would win is unclear, so refuse.
    config_file = write(tmp_path / "c.yaml", "runners:\n  Iris: {workers: 1}\n"
                                              "  iris: {workers: 2}\n")
    assert "runner 'iris' has two sections" in error_of(path=config_file, environ={})
    # The environment folds case itself, so it adds to the file's section.
    config = load_config(write(tmp_path / "d.yaml", "runners:\n  iris: {workers: 1}\n"),
                         environ={"DOSIRAK_CONFIG_OPTIONS": "runners.IRIS.batching.enabled=no"})
    assert config.runners.by_name["iris"].workers == 1
    assert config.runners.by_name["iris"].batching.enabled is False


def test_check_runners_refuses_sections_for_unknown_runners_and_methods():
    config = options("runners.iris_clff.workers=2 runners.iris_clf.methods.predcit.max_batch_size=4"
                     " runners.iris_clf.methods.predict.max_batch_size=4")
    with pytest.raises(InvalidArgument) as caught:
        config.check_runners({"iris_clf": ["predict", "predict_proba"]})
    message = str(caught.value)
    assert "runners.iris_clff: the service has no runner 'iris_clff' (did you mean 'iris_clf'?)"\
        in message
    assert "runners.iris_clf.methods.predcit" in message and "did you mean 'predict'?" in message
    assert "its methods are: predict, predict_proba" in message
    options("runners.iris_clf.methods.predict.max_batch_size=4").check_runners(
        {"IRIS_CLF": ["predict"]})


# --- reference -----------------------------------------------------------------------------------


def test_reference_covers_every_setting():
    keys = [key for key, _, _ in config_reference()]
    assert len(keys) == len(set(keys))
    for key in ("api_server.host", "api_server.cors.max_age", "runners.batching.max_latency_ms",
                "runners.NAME.workers", "runners.NAME.methods.METHOD.max_batch_size",
                "metrics.duration_buckets", "logging.prediction.enabled"):
        assert key in keys
    assert all(description for _, _, description in config_reference())
    defaults = {key: default for key, default, _ in config_reference()}
    assert defaults["api_server.port"] == "3000"
    assert defaults["api_server.max_request_size"] == "20MiB"
    assert defaults["api_server.max_concurrency"] == "auto"
    # Every documented default is itself a valid value.
    assert options("api_server.max_request_size=20MiB").api_server.max_request_size == \
        ServingConfig().api_server.max_request_size


def test_docs_hold_the_generated_reference():
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert config_reference_markdown() in docs, (
        "docs/configuration.md is out of date: paste dosirak.config.config_reference_markdown()")
