import datetime as dt

import pytest

from sqlfix.config import load_settings
from sqlfix.errors import ConfigError


def write(tmp_path, body):
    (tmp_path / "pyproject.toml").write_text(body)
    return tmp_path


def test_defaults_without_pyproject(tmp_path):
    settings = load_settings(tmp_path)
    assert settings.dsn is None and settings.seed == 0
    assert settings.fixtures_dir == tmp_path / "fixtures_sql"
    assert settings.source("seed") == "default"


def test_cli_beats_env_beats_pyproject(tmp_path):
    write(tmp_path, '[tool.sqlfix]\nseed = 1\ndsn = "dbname=a_test"\n')
    settings = load_settings(tmp_path, {"seed": "3"}, {"SQLFIX_SEED": "2", "SQLFIX_DSN": "dbname=b_test"})
    assert (settings.seed, settings.source("seed")) == (3, "option --sqlfix-seed")
    assert (settings.dsn, settings.source("dsn")) == ("dbname=b_test", "env SQLFIX_DSN")
    assert load_settings(tmp_path, {}, {"SQLFIX_SEED": "2"}).seed == 2
    assert load_settings(tmp_path).seed == 1


def test_random_seed_is_picked_and_says_so(tmp_path):
    settings = load_settings(tmp_path, {"seed": "random"})
    assert 0 <= settings.seed < 2**32
    assert settings.source("seed").startswith("random")


def test_schema_and_fixtures_dir_are_relative_to_the_project(tmp_path):
    write(tmp_path, '[tool.sqlfix]\nfixtures_dir = "data"\nschema = ["db/schema.sql"]\n')
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "schema.sql").write_text("")
    settings = load_settings(tmp_path)
    assert settings.fixtures_dir == tmp_path / "data"
    assert settings.schema == (tmp_path / "db" / "schema.sql",)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("[tool.sqlfix]\nfixture_dir = 'x'\n", "unknown key(s) in [tool.sqlfix]: fixture_dir"),
        ("[tool.sqlfix]\nseed = 'abc'\n", "'abc'"),
        ("[tool.sqlfix]\nseed = -1\n", "non-negative"),
        ("[tool.sqlfix]\nallow_any_database = 'yes'\n", "wrong type"),
        ("[tool.sqlfix]\nnow = 'tomorrow'\n", "ISO timestamp"),
        ("[tool.sqlfix\n", "invalid TOML"),
        ("[tool.sqlfix]\nfixtures_dir = 5\n", "fixtures_dir = 5 has the wrong type"),
        ("[tool.sqlfix]\ndsn = 5\n", "dsn = 5 has the wrong type"),
        ("[tool.sqlfix]\nsetup_command = 5\n", "setup_command must be a command line"),
        ("[tool.sqlfix]\nreset_sequences = 'no'\n", "wrong type"),
        # the project root, silently: every .sql file in it a fixture
        ("[tool.sqlfix]\nfixtures_dir = ''\n", "[tool.sqlfix] fixtures_dir is empty: give the "
         "fixtures folder, relative to the project root ('.' for the root itself)"),
        # a bare database name: libpq's words alone at connect time, exit 3, before
        ("[tool.sqlfix]\ndsn = 'myapp_test'\n", "[tool.sqlfix] dsn is not a connection string "
         "libpq can read (missing \"=\" after \"myapp_test\""),
    ],
)
def test_bad_configuration_is_an_error_that_names_it(tmp_path, body, words):
    write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert words in str(info.value)


# A TOML date, time or table is shown as written, never as a Python repr
@pytest.mark.parametrize(("line", "words"), [
    ("seed = 2024-01-01", "seed = 2024-01-01 must be an integer"),
    ("dsn = 2024-01-01T09:30:00", "dsn = 2024-01-01T09:30:00 has the wrong type"),
    ("faker_locale = 12:00:00", "faker_locale = 12:00:00 has the wrong type"),
    ("setup_command = 1979-05-27", "a list of arguments, not 1979-05-27"),
    ("statement_timeout = [true, 1979-05-27]", "[true, 1979-05-27] is not a duration"),
    ("lint = {select = [2024-01-01]}", "select = [2024-01-01] must be a list of rule codes"),
    # true is an int to Python: it was read as the version 'True'
    ("server_version = true", "server_version = true has the wrong type: it takes a string or "
                              "an integer"),
    ("verify = 1", "verify: 1 is not a boolean: use true or false"),  # was taken for true
    ("server_settings = {work_mem = 2024-01-01}", "work_mem = 2024-01-01 must be a string"),
    ("server_settings = {myapp = {day = 2024-01-01}}",
     'myapp = {day = 2024-01-01} is a TOML table'),
])
def test_a_toml_value_of_the_wrong_type_is_shown_as_written(tmp_path, line, words):
    write(tmp_path, f"[tool.sqlfix]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert words in str(info.value) and "datetime" not in str(info.value)


def test_timeouts_and_verify_from_pyproject_and_options(tmp_path):
    write(tmp_path, '[tool.sqlfix]\nlock_timeout = "2s"\nload_statement_timeout = 750\nverify = true\n')
    settings = load_settings(tmp_path)
    assert (settings.lock_timeout, settings.load_statement_timeout, settings.verify) == (2000, 750, True)
    assert (settings.statement_timeout, settings.load_lock_timeout) == (300_000, 5_000)  # defaults
    settings = load_settings(tmp_path, {"lock_timeout": "1min", "statement_timeout": "0"})
    assert (settings.lock_timeout, settings.statement_timeout) == (60_000, 0)
    assert settings.source("lock_timeout") == "option --sqlfix-lock-timeout"


@pytest.mark.parametrize("value", ['"ten seconds"', '"-1s"', "-5", '"5 fortnights"', "true"])
def test_a_bad_timeout_is_refused_with_the_value(tmp_path, value):
    write(tmp_path, f"[tool.sqlfix]\nlock_timeout = {value}\n")
    with pytest.raises(ConfigError, match=r"lock_timeout: .* is not a duration"):
        load_settings(tmp_path)


@pytest.mark.parametrize("key", ["lock_timeout", "statement_timeout", "load_lock_timeout",
                                 "load_statement_timeout"])
@pytest.mark.parametrize("value", ["99999999999", '"2147483648ms"', '"25d"', '"600h"'])
def test_a_timeout_postgresql_cannot_hold_is_refused_naming_the_key(tmp_path, key, value):
    write(tmp_path, f"[tool.sqlfix]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"\[tool.sqlfix\] {key}: .* at most 2147483647 ms"):
        load_settings(tmp_path)


def test_the_largest_timeout_postgresql_holds_is_accepted(tmp_path):
    write(tmp_path, '[tool.sqlfix]\nlock_timeout = 2147483647\nstatement_timeout = "24d"\n')
    settings = load_settings(tmp_path)
    assert (settings.lock_timeout, settings.statement_timeout) == (2147483647, 2_073_600_000)


def test_a_timeout_out_of_range_from_an_ini_option_names_the_ini_key(tmp_path):
    with pytest.raises(ConfigError, match=r"pytest.ini: sqlfix_load_lock_timeout: .*at most"):
        load_settings(tmp_path, ini={"load_lock_timeout": "30d"}, ini_file="pytest.ini")


def test_a_bad_verify_is_refused(tmp_path):
    write(tmp_path, '[tool.sqlfix]\nverify = "sometimes"\n')
    with pytest.raises(ConfigError, match="verify: 'sometimes' is not a boolean"):
        load_settings(tmp_path)


@pytest.mark.parametrize("option", ["--sqlfix-lock-timeout", "--sqlfix-statement-timeout",
                                    "--sqlfix-load-lock-timeout",
                                    "--sqlfix-load-statement-timeout"])
def test_a_timeout_option_out_of_range_is_a_usage_error_naming_it(pytester, option):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest(f"{option}=99999999999")
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"*argument {option}: '99999999999'*at most 2147483647 ms*"])


def test_a_timeout_ini_option_out_of_range_is_a_usage_error_naming_it(pytester):
    pytester.makeini("[pytest]\nsqlfix_statement_timeout = 99999999999\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile("def test_x(sqlfix_conn):\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*sqlfix_statement_timeout: '99999999999'*at most*"])


def test_a_bad_timeout_option_is_a_usage_error(pytester):
    result = pytester.runpytest("--sqlfix-lock-timeout=soon")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*argument --sqlfix-lock-timeout: 'soon' is not a duration*"])


def test_layers_keys_from_pyproject_and_the_option(tmp_path):
    assert (load_settings(tmp_path).layers, load_settings(tmp_path).layers_max_tests) == (False, 500)
    write(tmp_path, '[tool.sqlfix]\nlayers = true\nlayers_max_tests = 50\n')
    settings = load_settings(tmp_path)
    assert (settings.layers, settings.layers_max_tests) == (True, 50)
    write(tmp_path, "[tool.sqlfix]\n")
    assert load_settings(tmp_path, {"layers": True}).source("layers") == "option --sqlfix-layers"


@pytest.mark.parametrize("value", ["0", "-3", '"many"', "true", "2.5"])
def test_a_bad_layers_max_tests_is_refused_with_the_value(tmp_path, value):
    write(tmp_path, f"[tool.sqlfix]\nlayers_max_tests = {value}\n")
    with pytest.raises(ConfigError, match=r"layers_max_tests: .* must be a whole number of 1"):
        load_settings(tmp_path)


def test_vacuum_threshold_from_pyproject_and_ini(tmp_path):
    assert load_settings(tmp_path).vacuum_threshold == 2000
    write(tmp_path, "[tool.sqlfix]\nvacuum_threshold = 0\n")  # 0: never
    assert load_settings(tmp_path).vacuum_threshold == 0
    assert _from_ini(tmp_path, {"vacuum_threshold": "500"}, where="/p/pytest.ini"
                     ).vacuum_threshold == 500


@pytest.mark.parametrize("value", ["-1", '"many"', "true", "2.5"])
def test_a_bad_vacuum_threshold_is_refused_with_the_value(tmp_path, value):
    write(tmp_path, f"[tool.sqlfix]\nvacuum_threshold = {value}\n")
    with pytest.raises(ConfigError, match=r"vacuum_threshold: .* must be a whole number of 0"):
        load_settings(tmp_path)


# PostgreSQL reads a time setting as a decimal number (fraction and exponent allowed)
# with an optional unit, rounded to the nearest ms (halves to even, as its rint() does)
FRACTIONS = [('"0.5s"', 500), ('"1.5ms"', 2), ('"2.5ms"', 2), ('"0.25min"', 15_000),
             ('"1.5h"', 5_400_000), ('"0.5d"', 43_200_000), ('"1500us"', 2),
             ('"10 s"', 10_000), ('".5s"', 500), ('"1e3ms"', 1_000), ('"1.5"', 2),
             ("1.5", 2), ('"0.4us"', 1), ('"0.0s"', 0), ('"3.7S"', 3_700)]


@pytest.mark.parametrize(("value", "millis"), FRACTIONS)
def test_fractional_durations_are_read_as_postgresql_reads_them(tmp_path, value, millis):
    write(tmp_path, f"[tool.sqlfix]\nlock_timeout = {value}\n")
    assert load_settings(tmp_path).lock_timeout == millis
    text = value.strip('"')
    assert load_settings(tmp_path, {"statement_timeout": text}).statement_timeout == millis
    ini = load_settings(tmp_path, ini={"load_lock_timeout": text}, ini_file="pytest.ini")
    assert ini.load_lock_timeout == millis


@pytest.mark.parametrize("value", ['"1.2.3s"', '"."', '"1e"', '"nan"', '"inf"', '"s"',
                                   '"-0.5s"', '"0.5 fortnights"', '"1,5s"', "nan"])
def test_a_bad_fractional_duration_is_refused(tmp_path, value):
    write(tmp_path, f"[tool.sqlfix]\nlock_timeout = {value}\n")
    with pytest.raises(ConfigError, match=r"lock_timeout: .* is not a duration"):
        load_settings(tmp_path)


def test_a_fractional_timeout_option_is_accepted(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--sqlfix-lock-timeout=0.5s", "--sqlfix-statement-timeout=1.5ms")
    assert result.ret == 0, result.stderr.str()


# ------------------------------------------------------------------ `now`: a date alone


@pytest.mark.parametrize("body", ["now = 2024-06-01", 'now = "2024-06-01"', 'now = "20240601"',
                                  'now = " 2024-06-01 "', 'now = "2024-W22-6"'])
def test_a_date_alone_in_tool_sqlfix_is_refused_bare_or_as_a_string(tmp_path, body):
    write(tmp_path, f"[tool.sqlfix]\n{body}\n")
    with pytest.raises(ConfigError, match=r"pyproject.toml: \[tool.sqlfix\] now = \S+ is a date "
                       r"alone; now is a timestamp: give the time too, e.g. \S+T00:00:00\+00:00"):
        load_settings(tmp_path)


def test_a_date_alone_says_the_same_whether_bare_a_string_or_an_ini_option(tmp_path):
    import datetime as dt

    messages = []
    for value in (dt.date(2024, 6, 1), "2024-06-01"):
        with pytest.raises(ConfigError) as info:
            load_settings(tmp_path, ini={"now": value}, ini_file="pytest.ini")
        messages.append(str(info.value))
    assert messages == ["pytest.ini: sqlfix_now = 2024-06-01 is a date alone; now is a timestamp: "
                        "give the time too, e.g. 2024-06-01T00:00:00+00:00"] * 2


@pytest.mark.parametrize("value", ["2024-06-01T00:00", "2024-06-01 09:30:00", "2024-06-01T09Z",
                                   "2024-06-01T09:00:00Z", "2024-06-01T09:00:00z"])
def test_a_date_with_a_time_is_still_a_timestamp(tmp_path, value):
    write(tmp_path, f'[tool.sqlfix]\nnow = "{value}"\n')
    now = load_settings(tmp_path).now
    assert now.date().isoformat() == "2024-06-01"
    if value.lower().endswith("z"):  # UTC on every Python (3.10's fromisoformat reads no Z)
        assert (now.hour, now.utcoffset()) == (9, dt.timedelta(0))


# ------------------------------------------------------------------ ini options


def _from_ini(tmp_path, raw, where="/p/pytest.ini"):
    from sqlfix.config import ini_values

    return load_settings(tmp_path, ini=ini_values(raw, where), ini_file=where)


def test_server_settings_as_ini_lines_are_the_toml_table(tmp_path):
    lines = ["timezone = Europe/Paris", "work_mem='16MB'", 'search_path = "$user", public',
             "jit = off", "application_name = ''", "# a comment", "",
             # postgresql.conf's comments and quotes (the old reading kept them in the value)
             "maintenance_work_mem = 64MB   # more for the index builds",
             "DateStyle = 'ISO, MDY'  # a comment",
             "log_line_prefix = '%m [%p] # kept'", "cluster_name = 'it''s'",
             'lc_messages = "C"',
             # and its backslash escapes (GUC_scanstr; checked with `postgres -C` on 15)
             r"syslog_ident = 'a\tb\101\'c\qd''e'", r"log_timezone = 'it\'s' # c"]
    settings = _from_ini(tmp_path, {"server_settings": lines})
    assert dict(settings.server_settings) == {
        "timezone": "Europe/Paris", "work_mem": "16MB", "search_path": '"$user", public',
        "jit": "off", "application_name": "", "maintenance_work_mem": "64MB",
        "DateStyle": "ISO, MDY", "log_line_prefix": "%m [%p] # kept", "cluster_name": "it's",
        "lc_messages": "C", "syslog_ident": "a\tbA'cqd'e", "log_timezone": "it's"}
    assert settings.source("server_settings") == "/p/pytest.ini"
    # `-o sqlfix_server_settings=...` gives one line as text
    assert dict(_from_ini(tmp_path, {"server_settings": "jit = on"}).server_settings) == {
        "jit": "on"}


@pytest.mark.parametrize(("line", "words"), [
    ("= UTC", "'= UTC' is not a `name = value` line"),
    ("timezone =", "'timezone =' is not a `name = value` line"),
    # a name alone was split inside it (`timezon` = `e`), and a custom one got through so
    ("timezone", "'timezone' is not a `name = value` line (a name without a value)"),
    ("myapp.feature_flag", "'myapp.feature_flag' is not a `name = value` line (a name "
     "without a value)"),
    ("  work_mem  # a comment", "'work_mem  # a comment' is not a `name = value` line"),
    ("timezone = # UTC", "'timezone = # UTC' is not a `name = value` line"),
    ("timezone = 'UTC", '"timezone = \'UTC" is not a `name = value` line (the quote is not '
     "closed)"),
    ("timezone = 'UTC' Paris", '"timezone = \'UTC\' Paris" is not a `name = value` line (words '
     "after the closing quote)"),
    (r"timezone = 'UTC\'", repr(r"timezone = 'UTC\'") + " is not a `name = value` line (the "
     "quote is not closed)"),  # \' is no end
    # `-o 'sqlfix_server_settings=timezone = UTC; work_mem = 8MB'` set timezone to all of it
    ("timezone = UTC; work_mem = 8MB", "'timezone = UTC; work_mem = 8MB' is not a `name = value` "
     "line (a value with spaces is quoted, as in postgresql.conf: 'UTC; work_mem = 8MB'; one "
     "setting a line)"),
])
def test_a_bad_server_settings_line_is_refused_naming_the_ini_file(tmp_path, line, words):
    with pytest.raises(ConfigError) as info:
        _from_ini(tmp_path, {"server_settings": ["jit = on", line]})
    assert str(info.value).startswith(f"/p/pytest.ini: sqlfix_server_settings: {words}; ")
    assert "e.g. `timezone = Europe/Paris  # a comment`" in str(info.value)


def test_a_setting_twice_in_the_ini_lines_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"^/p/pytest.ini: sqlfix_server_settings: jit is set "
                       "twice$"):
        _from_ini(tmp_path, {"server_settings": ["jit = on", "jit = off"]})
    # PostgreSQL's names are case-insensitive: TimeZone would silently win over timezone
    with pytest.raises(ConfigError, match=r"^/p/pytest.ini: sqlfix_server_settings: TimeZone "
                       r"is set twice \(as timezone; the names are case-insensitive\)$"):
        _from_ini(tmp_path, {"server_settings": ["timezone = UTC", "TimeZone = Europe/Paris"]})


def test_the_equals_sign_is_optional_as_in_postgresql_conf(tmp_path):
    lines = ["timezone Europe/Paris", "work_mem 16MB  # a comment", "search_path '\"$user\", a'"]
    assert dict(_from_ini(tmp_path, {"server_settings": lines}).server_settings) == {
        "timezone": "Europe/Paris", "work_mem": "16MB", "search_path": '"$user", a'}


@pytest.mark.parametrize(("name", "problem"), [
    ("port", "port is set by sqlfix (use server_port for a TCP port)"),
    ("unix_socket_directories", "unix_socket_directories is set by sqlfix"),
    # the server's files: a foreign cluster would run with fsync off
    ("data_directory", "data_directory is set by sqlfix: the embedded server runs on a private"),
    ("Config_File", "Config_File is set by sqlfix: the embedded server runs on a private"),
    ("hba_file", "hba_file is set by sqlfix"),
    ("ident_file", "ident_file is set by sqlfix"),
    ("external_pid_file", "external_pid_file is set by sqlfix"),
    ("work-mem", "'work-mem' is not a PostgreSQL setting name"),
])
def test_server_settings_refusals_are_the_same_from_the_ini_and_the_table(tmp_path, name, problem):
    with pytest.raises(ConfigError) as ini:
        _from_ini(tmp_path, {"server_settings": [f"{name} = 5"]})
    write(tmp_path, f'[tool.sqlfix.server_settings]\n"{name}" = 5\n')
    with pytest.raises(ConfigError) as toml:
        load_settings(tmp_path)
    assert str(ini.value).startswith(f"/p/pytest.ini: sqlfix_server_settings.{name}: {problem}")
    assert str(toml.value).startswith(
        f"{tmp_path / 'pyproject.toml'}: [tool.sqlfix] server_settings.{name}: {problem}")


def test_a_nul_in_a_server_setting_is_a_configuration_error(tmp_path):
    # it reached subprocess.Popen: "ValueError: embedded null byte", an internal error
    write(tmp_path, '[tool.sqlfix.server_settings]\ncluster_name = "a\\u0000b"\n')
    with pytest.raises(ConfigError, match=r"server_settings.cluster_name: cluster_name = "
                       r"'a\\x00b' holds a NUL character"):
        load_settings(tmp_path)


def test_a_bad_server_version_names_the_key_once(tmp_path):
    write(tmp_path, '[tool.sqlfix]\nserver_version = "latest"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert str(info.value) == (f"{tmp_path / 'pyproject.toml'}: [tool.sqlfix] server_version: "
                               "'latest' is not a PostgreSQL major version such as \"16\"")


def test_native_toml_values_of_ini_options_are_read_as_tool_sqlfix_would_read_them(tmp_path):
    """pytest 9's pytest.toml and [tool.pytest] hold ints, booleans and dates unquoted."""
    import datetime as dt

    for name in ("a.sql", "b.sql"):
        (tmp_path / name).write_text("")

    settings = _from_ini(tmp_path, {
        "seed": 9, "verify": True, "layers": False, "reset_sequences": False,
        "lock_timeout": 500, "layers_max_tests": 7, "server_port": 54329,
        "server_version": 16, "now": dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "server_settings": {"jit": True, "work_mem": "16MB"},
        "setup_command": ["alembic", "upgrade", "head"], "schema": ["a.sql", "b.sql"]},
        where="/p/pytest.toml")
    assert (settings.seed, settings.verify, settings.layers, settings.reset_sequences,
            settings.lock_timeout, settings.layers_max_tests, settings.server_port,
            settings.server_version, settings.now.year) == (
        9, True, False, False, 500, 7, 54329, "16", 2030)
    assert dict(settings.server_settings) == {"jit": "on", "work_mem": "16MB"}
    assert settings.setup_command == ("alembic", "upgrade", "head")  # a list: no shell
    assert settings.schema == (tmp_path / "a.sql", tmp_path / "b.sql")


@pytest.mark.parametrize(("raw", "words"), [
    ({"seed": 1.5}, "/p/pytest.toml: sqlfix_seed = 1.5 must be an integer or 'random'"),
    ({"seed": True}, "/p/pytest.toml: sqlfix_seed = true must be an integer or 'random'"),
    # a TOML list for a one-value key: refused as in [tool.sqlfix], not joined into text
    ({"seed": [9]}, "/p/pytest.toml: sqlfix_seed = [9] must be an integer or 'random'"),
    ({"seed": []}, "/p/pytest.toml: sqlfix_seed = [] must be an integer or 'random'"),
    ({"verify": []}, "/p/pytest.toml: sqlfix_verify: [] is not a boolean"),
    ({"server_version": ["16"]}, "/p/pytest.toml: sqlfix_server_version"),
    ({"dsn": ["host=x"]}, "/p/pytest.toml: sqlfix_dsn = ['host=x'] has the wrong type"),
    ({"allow_any_database": 1}, "/p/pytest.toml: sqlfix_allow_any_database = 1 has the wrong type: "
                                "it takes true or false"),
    ({"server_version": 15.0}, "/p/pytest.toml: sqlfix_server_version = 15.0 has the wrong type: "
                               "it takes a string or an integer"),
    ({"faker_locale": 5}, "/p/pytest.toml: sqlfix_faker_locale = 5 has the wrong type"),
    ({"verify": 2}, "/p/pytest.toml: sqlfix_verify: 2 is not a boolean"),
    ({"server_settings": {"port": 5}}, "/p/pytest.toml: sqlfix_server_settings.port: port is set"),
    # neither lines nor a table, a list nor a path: a TypeError inside sqlfix once
    ({"server_settings": 5}, "/p/pytest.toml: sqlfix_server_settings = 5 has the wrong type"),
    ({"server_settings": True}, "/p/pytest.toml: sqlfix_server_settings = true has the wrong"),
    ({"server_settings": dt.date(2024, 1, 1)},
     "/p/pytest.toml: sqlfix_server_settings = 2024-01-01 has the wrong type"),
    ({"schema": 5}, "/p/pytest.toml: sqlfix_schema must be a list of .sql paths"),
    ({"schema": True}, "/p/pytest.toml: sqlfix_schema must be a list of .sql paths"),
    ({"schema": {"a": 1}}, "/p/pytest.toml: sqlfix_schema must be a list of .sql paths"),
])
def test_a_native_toml_value_of_the_wrong_type_names_the_file_and_option(tmp_path, raw, words):
    with pytest.raises(ConfigError) as info:
        _from_ini(tmp_path, raw, where="/p/pytest.toml")
    assert str(info.value).startswith(words)


def test_the_cli_reads_pytest_toml_with_its_toml_types(tmp_path):
    from sqlfix.config import find_project, ini_of

    (tmp_path / "pytest.toml").write_text(
        '[pytest]\nsqlfix_seed = 9\nsqlfix_verify = true\n'
        'sqlfix_server_settings = ["timezone = Europe/Paris"]\n')
    project = find_project(tmp_path)
    settings = load_settings(project.root, ini=ini_of(project), ini_file=str(project.inifile))
    assert (settings.seed, settings.verify) == (9, True)
    assert dict(settings.server_settings) == {"timezone": "Europe/Paris"}
    (tmp_path / "pytest.toml").unlink()  # [tool.pytest.ini_options] is read as text, as pytest does
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\nsqlfix_seed = 9\n")
    assert find_project(tmp_path).ini["sqlfix_seed"] == "9"
    (tmp_path / "pyproject.toml").write_text("[tool.pytest]\nsqlfix_seed = 9\n")
    assert find_project(tmp_path).ini["sqlfix_seed"] == 9


@pytest.mark.parametrize(("source", "where"), [
    ("toml", "pyproject.toml: [tool.sqlfix] schema"),
    ("ini", "pytest.ini: sqlfix_schema"),
])
def test_a_missing_schema_file_names_the_place_that_lists_it(tmp_path, source, where):
    (tmp_path / "there.sql").write_text("")
    if source == "toml":
        write(tmp_path, '[tool.sqlfix]\nschema = ["there.sql", "db/missing.sql"]\n')
        raw = None
    else:
        raw = {"schema": ["there.sql", "db/missing.sql"]}
    with pytest.raises(ConfigError) as info:
        if raw is None:
            load_settings(tmp_path)
        else:
            _from_ini(tmp_path, raw, where=str(tmp_path / "pytest.ini"))
    assert str(info.value) == (
        f"{tmp_path / where}: schema file db/missing.sql not found (looked for "
        f"{tmp_path / 'db' / 'missing.sql'}); fix the path, relative to the project root, or "
        "create the file")


@pytest.mark.parametrize(("value", "problem"), [
    # a minor version picked nothing: "15.4" silently ran the 15.18 found first
    ("15.4", "'15.4' is a minor version: give the major, \"15\"; sqlfix runs the first "
             "PostgreSQL 15 installation it finds, whatever its minor version"),
    ("16.0.1", "'16.0.1' is a minor version: give the major, \"16\""),
    # "015" was taken and never matched an installation
    ("015", "'015' is not a PostgreSQL major version such as \"16\""),
    # 9 to 12 were taken, though the code needs 13 (pg_sequences, DROP DATABASE ... FORCE)
    ("9", "'9' is not a PostgreSQL major version sqlfix can run: it needs 13 or later "
          "(14 to 18 are supported), e.g. \"16\""),
    ("9.6", "'9.6' is not a PostgreSQL major version sqlfix can run: it needs 13 or later"),
    (12, "'12' is not a PostgreSQL major version sqlfix can run: it needs 13 or later"),
    ("160000", "'160000' is not a PostgreSQL major version sqlfix can run"),
])
def test_server_version_must_be_a_major_sqlfix_can_run(tmp_path, value, problem):
    write(tmp_path, f"[tool.sqlfix]\nserver_version = {value!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError) as toml:
        load_settings(tmp_path)
    assert str(toml.value).startswith(
        f"{tmp_path / 'pyproject.toml'}: [tool.sqlfix] server_version: {problem}")
    with pytest.raises(ConfigError) as ini:
        _from_ini(tmp_path, {"server_version": str(value)})
    assert str(ini.value).startswith(f"/p/pytest.ini: sqlfix_server_version: {problem}")


@pytest.mark.parametrize(("value", "major"), [("13", "13"), (18, "18"), (" 16 ", "16"), ("19", "19")])
def test_server_version_takes_the_majors_sqlfix_can_run(tmp_path, value, major):
    assert _from_ini(tmp_path, {"server_version": value}).server_version == major


def test_settings_say_how_the_source_of_a_key_spells_it(tmp_path):
    # for errors raised later, at the server's start (no installation of that major)
    settings = _from_ini(tmp_path, {"server_version": "16"})
    assert (settings.source("server_version"), settings.option("server_version")) == (
        "/p/pytest.ini", "sqlfix_server_version")
    write(tmp_path, '[tool.sqlfix]\nserver_version = "16"\n')
    settings = load_settings(tmp_path)
    assert (settings.source("server_version"), settings.option("server_version")) == (
        str(tmp_path / "pyproject.toml"), "[tool.sqlfix] server_version")
    assert settings.option("server_locale") == "server_locale"  # not set: the key itself


@pytest.mark.parametrize(("key", "text", "value"), [
    ("server_version", '"16"', "16"), ("seed", "'5'", 5), ("reset_sequences", '"false"', False),
    ("dsn", '"host=db dbname=app_test"', "host=db dbname=app_test")])
def test_quotes_around_an_ini_value_are_not_part_of_it(tmp_path, key, text, value):
    """In pytest.ini quotes are text; written out of a TOML habit, they are dropped."""
    assert getattr(_from_ini(tmp_path, {key: text}), key) == value


@pytest.mark.parametrize("text", ["٣", "1_000", "+5", " 7x", "-1", "", "0x10"])
def test_a_seed_is_ascii_digits_or_random(text):
    # int() takes Unicode digits, underscores and a sign: a seed copied from a log never has them
    from sqlfix.config import parse_seed

    with pytest.raises(ValueError, match="seed must be a non-negative integer or 'random'"):
        parse_seed(text)


@pytest.mark.parametrize(("text", "seed"), [("0", 0), (" 42 ", 42), ("RANDOM", None), (str(2**70), 2**70)])
def test_a_seed_as_text(text, seed):
    from sqlfix.config import parse_seed

    assert parse_seed(text) == seed


@pytest.mark.parametrize(("env", "cli", "said"), [
    ({"SQLFIX_SEED": "abc"}, {}, "env SQLFIX_SEED: seed must be a non-negative integer"),
    ({}, {"seed": "abc"}, "option --sqlfix-seed: seed must be a non-negative integer"),
])
def test_a_bad_seed_from_the_environment_or_an_option_says_seed_once(tmp_path, env, cli, said):
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, cli=cli, env=env)
    assert str(info.value).startswith(said), str(info.value)


def test_a_dotted_setting_name_unquoted_in_toml_is_told_to_quote_it(tmp_path):
    # TOML reads `myapp.tenant = "x"` as a table: the custom setting needs its name quoted.
    write(tmp_path, '[tool.sqlfix.server_settings]\nmyapp.tenant = "custom"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert str(info.value).endswith(
        'is a TOML table: a setting name with a dot (a custom setting) is quoted in TOML, '
        'e.g. "myapp.tenant" = "custom"')
    write(tmp_path, '[tool.sqlfix.server_settings]\n"myapp.tenant" = "custom"\n')
    assert dict(load_settings(tmp_path).server_settings) == {"myapp.tenant": "custom"}


def test_seed_last_outside_the_command_line_says_where_it_works(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, env={"SQLFIX_SEED": "last"})
    assert ("seed must be a non-negative integer or 'random', not 'last' ('last' is "
            "pytest's --sqlfix-seed=last only") in str(info.value)


def test_a_server_settings_line_in_quotes_is_read_without_them(tmp_path):
    # `sqlfix_server_settings = "timezone = Europe/Paris"`: the TOML habit, in an ini file
    for line in ('"timezone = Europe/Paris"', "'timezone = Europe/Paris'"):
        assert dict(_from_ini(tmp_path, {"server_settings": [line]}).server_settings) == {
            "timezone": "Europe/Paris"}


# ------------------------------------------------------------------ files pytest and TOML refuse


@pytest.mark.parametrize(("name", "body", "words"), [
    ("pyproject.toml", b'[tool.sqlfix]\nseed = "\xff"\n', "pyproject.toml: line 2 is not UTF-8"),
    ("pytest.ini", b"[pytest]\nsqlfix_seed = 1\n# caf\xe9\n", "pytest.ini: line 3 is not UTF-8"),
    ("pyproject.toml", b"\xef\xbb\xbf[tool.sqlfix]\nseed = 1\n", "begins with a byte order mark"),
    ("pyproject.toml", b'[tool]\nsqlfix = "x"\n', "tool.sqlfix = 'x' must be a table"),
    ("pytest.ini", b"\xef\xbb\xbf[pytest]\nsqlfix_seed = 1\n", "begins with a byte order mark"),
])
def test_a_configuration_file_sqlfix_cannot_read_is_named_not_a_crash(tmp_path, name, body, words):
    # A UnicodeDecodeError, or the characters of "x" taken for keys, before
    from sqlfix.config import find_project, ini_of

    (tmp_path / name).write_bytes(body)
    with pytest.raises(ConfigError) as info:
        project = find_project(tmp_path)
        load_settings(project.root, ini=ini_of(project), ini_file=str(project.inifile))
    assert str(info.value).startswith(str(tmp_path / name)) and words in str(info.value)


def test_a_non_table_tool_in_pyproject_is_passed_by_as_pytest_does(tmp_path):
    from sqlfix.config import find_project

    write(tmp_path, "tool = 5\n")  # an AttributeError before
    assert find_project(tmp_path).inifile is None


def test_a_tool_sqlfix_table_below_the_project_root_is_refused_not_passed_by(tmp_path):
    # A monorepo: pytest.ini at the top, [tool.sqlfix] in app/pyproject.toml. From app/,
    # pytest's root is the top, and the app's seed, schema and fixtures went unused.
    from sqlfix.config import find_project, refuse_unread_tables

    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    app = tmp_path / "app"
    (app / "tests").mkdir(parents=True)
    (app / "pyproject.toml").write_text("[tool.sqlfix]\nseed = 42\n")
    project = find_project(app / "tests")
    assert project.root == tmp_path
    with pytest.raises(ConfigError) as info:
        refuse_unread_tables(app / "tests", project.root, project.inifile)
    said = str(info.value)
    assert said.startswith(f"{app / 'pyproject.toml'} has a [tool.sqlfix] table that is not read: "
                           f"{tmp_path / 'pytest.ini'} is pytest's configuration file, so the "
                           f"project root is {tmp_path}")
    assert "a [tool.pytest.ini_options] table in" in said
    refuse_unread_tables(tmp_path, project.root, project.inifile)  # from the root: its own
    # the way out the message gives: the app becomes pytest's root, and its table is read
    (app / "pyproject.toml").write_text("[tool.pytest.ini_options]\n[tool.sqlfix]\nseed = 42\n")
    project = find_project(app / "tests")
    assert project.root == app
    refuse_unread_tables(app / "tests", project.root, project.inifile)
    assert load_settings(project.root).seed == 42
    # a pyproject.toml without [tool.sqlfix] in between is nobody's concern
    (app / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    refuse_unread_tables(app / "tests", tmp_path, tmp_path / "pytest.ini")


def test_pytest_from_a_subfolder_refuses_its_unread_tool_sqlfix(pytester, monkeypatch):
    pytester.makeini("[pytest]\n")
    app = pytester.mkpydir("app")
    (app / "pyproject.toml").write_text("[tool.sqlfix]\nseed = 42\n")
    (app / "test_a.py").write_text("def test_a(sqlfix):\n    pass\n")
    monkeypatch.chdir(app)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*app/pyproject.toml has a ?tool.sqlfix? table that is not read*"])


@pytest.mark.parametrize(("ini", "args"), [
    ("testpaths = app\n", []), ("", ["app"]), ("", ["app/test_a.py::test_a"]),
    ("", []),  # the whole tree: the collected sqlfix tests' folders tell
    ("", ["-n", "2"]),  # found by the workers: an INTERNALERROR of the controller, once
], ids=["testpaths", "folder", "node-id", "everything", "everything-xdist"])
def test_pytest_from_the_root_refuses_the_unread_tool_sqlfix_of_the_paths_it_runs(
        pytester, ini, args):
    # The common monorepo run: from the top, with the app's tests as arguments or testpaths
    pytester.makeini(f"[pytest]\n{ini}")
    app = pytester.mkpydir("app")
    (app / "pyproject.toml").write_text("[tool.sqlfix]\nseed = 42\n")
    (app / "test_a.py").write_text("def test_a(sqlfix):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    said = result.stdout.str() + result.stderr.str()
    assert "app/pyproject.toml has a [tool.sqlfix] table that is not read" in said, said
    assert "INTERNALERROR" not in said, said
