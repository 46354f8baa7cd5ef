from pathlib import Path

import pytest

from modemgw import config as configuration

EXAMPLE = Path(__file__).parent.parent / "deploy" / "config.example.toml"


def test_the_commented_example_loads_and_matches_the_defaults():
    loaded = configuration.load(EXAMPLE)
    defaults = configuration.load(None)
    assert vars(loaded.gateway) == vars(defaults.gateway)
    assert loaded.pool.strategy == defaults.pool.strategy
    assert loaded.listen == defaults.listen
    assert str(loaded.data_dir) == "/var/lib/modemgw"


def test_every_option_is_documented_in_the_example():
    example = EXAMPLE.read_text()
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for option in [*configuration.GATEWAY_OPTIONS, *configuration.HTTP_OPTIONS, *configuration.MODEM_OPTIONS]:
        assert f"{option} =" in example, option
        assert f"`{option}`" in readme, f"{option} is not in the README's configuration table"


@pytest.mark.parametrize("text, message", [
    ("[gateway]\nmax_segments = 0\n", "config.toml:2: [gateway] max_segments must be from 1 to 255"),
    ("[gateway]\nstrategy = \"fastest\"\n", "config.toml:2: [gateway] strategy must be one of least-used"),
    ("[gateway]\nmax_segmnts = 3\n", "config.toml:2: [gateway] max_segmnts is not an option here"),
    ("[http]\nlisten = \"8080\"\n", "config.toml:2: [http] listen must be HOST:PORT"),
    ("[[modem]]\nlabel = \"a\"\n", "[modem] device (or imei, or iccid) is needed in [[modem]] number 1"),
    ("[[modem]]\nlabel = \"a\"\nimei = \"35693803\"\n", "config.toml:3: [modem] imei must be 14-15 digits"),
    ("[[modem]]\niccid = \"8944X00000000000005\"\n", "config.toml:2: [modem] iccid must be 18-22 digits"),
    ("[gateway]\nports = [\"dev/ttyUSB*\"]\n", "config.toml:2: [gateway] ports must be a list of absolute paths"),
    ("[gateway]\nhotplug_interval = 0\n", "config.toml:2: [gateway] hotplug_interval must be at least 0.1"),
    ("[[modem]]\ndevice = \"/dev/x\"\n\n[[modem]]\ndevice = \"/dev/y\"\nrate_per_minute = \"ten\"\n",
     "config.toml:6: [modem] rate_per_minute must be int"),
    ("[gateway\n", "not valid TOML"),
    ("[postfix]\nhost = \"x\"\n", "postfix is not a section"),
])
def test_a_bad_config_names_file_line_and_option(tmp_path, text, message):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(configuration.ConfigError) as caught:
        configuration.load(path)
    assert message in str(caught.value)
