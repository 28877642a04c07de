"""The entity definition schema and loader: packaged definitions load, bad ones fail clearly."""

from __future__ import annotations

import textwrap

import pytest

from givbridge.entities import (
    TIME_SLOT_OPTIONS,
    EntityDefinitionError,
    load_bridge_catalogue,
    load_catalogue,
    parse_catalogue,
    resolve_limit,
)
from givbridge.log import LOG_LEVELS

GOOD_SENSOR = """
PV_Power:
  platform: sensor
  device_class: power
  state_class: measurement
  unit: W
"""


def parse(text: str, filename: str = "test.yaml") -> object:
    return parse_catalogue({filename: textwrap.dedent(text)})


def problems_of(text: str, filename: str = "test.yaml") -> str:
    with pytest.raises(EntityDefinitionError) as caught:
        parse(text, filename)
    return str(caught.value)


# --- the packaged catalogue ----------------------------------------------------------------------


def test_packaged_catalogue_loads_once() -> None:
    catalogue = load_catalogue()
    assert catalogue is load_catalogue()
    assert len(catalogue) > 150
    assert catalogue.sources["PV_Power"] == "power.yaml"
    assert catalogue.for_path("Battery_Details/Battery_Stack_1/BG2134G001/Battery_SOC") is catalogue["Battery_SOC"]


def test_packaged_definitions_follow_home_assistant_rules() -> None:
    catalogue = load_catalogue()
    soc = catalogue["SOC"]
    assert (soc.device_class, soc.unit, soc.state_class) == ("battery", "%", "measurement")
    today = catalogue["PV_Energy_Today_kWh"]
    assert (today.device_class, today.unit, today.state_class, today.counter) == (
        "energy",
        "kWh",
        "total_increasing",
        "today",
    )
    assert catalogue["Import_Energy_Total_kWh"].counter == "total"
    assert catalogue["Battery_Capacity_kWh"].unit == "kWh"
    assert catalogue["Invertor_Serial_Number"].entity_category == "diagnostic"
    assert catalogue["Target_SOC"].entity_category == "config"
    assert catalogue["PV_Power"].name == "PV Power"  # GivTCP's naming
    assert catalogue["Charge_start_time_slot_1"].option_values() == TIME_SLOT_OPTIONS
    for key in catalogue:
        definition = catalogue[key]
        if definition.platform in ("sensor", "binary_sensor"):
            assert definition.entity_category != "config", key
        else:
            assert definition.command, key


def test_the_bridge_devices_entities_are_a_catalogue_of_their_own() -> None:
    bridge = load_bridge_catalogue()
    assert list(bridge) == ["state", "version", "restart", "log_level"]
    assert not set(bridge) & set(load_catalogue())  # never taken for a published value's leaf
    assert bridge["log_level"].option_values() == LOG_LEVELS == ("debug", "info", "warning", "error")
    assert (bridge["version"].json_key, bridge["state"].json_key) == ("version", None)


def test_time_slot_options_are_every_minute() -> None:
    assert len(TIME_SLOT_OPTIONS) == 1440
    assert (TIME_SLOT_OPTIONS[0], TIME_SLOT_OPTIONS[-1]) == ("00:00:00", "23:59:00")


def test_symbolic_limits_resolve_per_device() -> None:
    limits = {"battery_max_power": 3600.0, "inverter_max_power": None}
    assert resolve_limit("battery_max_power", limits) == 3600.0
    assert resolve_limit("-battery_max_power", limits) == -3600.0
    assert resolve_limit("inverter_max_power", limits) is None
    assert resolve_limit(100, limits) == 100
    assert resolve_limit(None, limits) is None


# --- loader behaviour ---------------------------------------------------------------------------


def test_anchor_holders_and_merge_keys() -> None:
    catalogue = parse_catalogue(
        {
            "a.yaml": textwrap.dedent(
                """
                x-power: &power
                  platform: sensor
                  device_class: power
                  state_class: measurement
                  unit: W
                PV_Power: *power
                Load_Power:
                  <<: *power
                  name: House load
                """
            )
        }
    )
    assert set(catalogue) == {"PV_Power", "Load_Power"}
    assert catalogue["Load_Power"].name == "House load"
    assert catalogue["Load_Power"].unit == "W"


# --- bad definitions give clear errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            """
            PV_Power:
              platform: sensor
              device_class: power
              state_class: measurement
              unit: W
              entity_category: config
            """,
            "cannot have entity_category 'config'",
        ),
        (
            """
            Battery_Capacity_kWh:
              platform: sensor
              unit: Ah
            """,
            "unit must be kWh",
        ),
        (
            """
            PV_Energy_Today_kWh:
              platform: sensor
              device_class: energy
              state_class: measurement
              unit: kWh
            """,
            "device_class energy takes state_class",
        ),
        (
            """
            Load_Power:
              platform: sensor
              device_class: power
              state_class: measurement
              unit: kWh
            """,
            "device_class power takes unit",
        ),
        (
            """
            SOC:
              platform: sensor
              device_class: battery
              unit: V
            """,
            "device_class battery takes unit",
        ),
        (
            """
            Target_SOC:
              platform: number
              min: 4
              max: 100
              step: 1
            """,
            "needs a command",
        ),
        (
            """
            Target_SOC:
              platform: number
              command: setChargeTarget
              min: 4
            """,
            "a number needs a step",
        ),
        (
            """
            Target_SOC:
              platform: number
              command: setChargeTarget
              step: 0
            """,
            "step must be above 0",
        ),
        (
            """
            Battery_Charge_Rate:
              platform: number
              command: setChargeRate
              step: battery_rate_stride
            """,
            "neither a number nor one of",
        ),
        (
            """
            Mode:
              platform: select
              command: setBatteryMode
            """,
            "a select needs options",
        ),
        (
            """
            Eco_Mode:
              platform: switch
              command: setEcoMode
            """,
            "needs state_on and state_off",
        ),
        (
            """
            PV_Power:
              platform: sensor
              device_class: power
              unit: W
              command: setSomething
            """,
            "read-only and cannot have a command",
        ),
        (
            """
            Battery_Charge_Rate:
              platform: number
              command: setChargeRate
              min: 0
              max: battery_max_watts
              step: 1
            """,
            "neither a number nor one of",
        ),
        (
            """
            PV_Energy_Total_kWh:
              platform: sensor
              device_class: energy
              state_class: total_increasing
              unit: kWh
            """,
            "counter (today/total) and state_class total_increasing go together",
        ),
        (
            """
            PV_Power:
              platform: sensor
              device_class: power
              state_class: measurement
              unit: W
              hold_decreases: true
            """,
            "hold_decreases applies to counters only",
        ),
        (
            """
            Battery_Calibration_Status:
              platform: sensor
              device_class: enum
            """,
            "an enum sensor needs its options",
        ),
        (
            """
            PV_Power:
              platform: sensor
              device_clas: power
            """,
            "device_clas: Extra inputs are not permitted",
        ),
        (
            """
            PV_Power:
              platform: gauge
            """,
            "platform: Input should be",
        ),
        (
            """
            Grid_Voltage:
              platform: sensor
              device_class: voltage
              unit: V
              bounds: {min: 300, max: 150}
            """,
            "bounds min 300 is above max 150",
        ),
        (
            """
            Grid_Voltage:
              platform: sensor
              device_class: volts
              unit: V
            """,
            "sensor device_class 'volts' is not one givbridge knows",
        ),
        (
            """
            restart:
              platform: button
              command: restart
              json_key: restart
            """,
            "a button has no state to read a json_key from",
        ),
        (
            """
            Mode:
              platform: select
              command: setBatteryMode
              options: levels
            """,
            "options must be a list of strings or one of ['log_levels', 'time_slots']",
        ),
    ],
)
def test_bad_definition_is_reported_with_file_key_and_rule(yaml_text: str, message: str) -> None:
    error = problems_of(yaml_text, filename="broken.yaml")
    assert "broken.yaml: " in error
    assert message in error


def test_unquoted_off_is_caught_as_not_a_string() -> None:
    error = problems_of(
        """
        Battery_Calibration:
          platform: select
          command: setBatteryCalibration
          options: [Off, Start]
        """
    )
    assert "Battery_Calibration: options: option False is not a string (quote Off/On/Yes/No" in error


def test_duplicate_key_in_one_file() -> None:
    error = problems_of(GOOD_SENSOR + GOOD_SENSOR)
    assert "duplicate key 'PV_Power'" in error


def test_duplicate_key_across_files() -> None:
    with pytest.raises(EntityDefinitionError, match=r"b.yaml: PV_Power: already defined in a.yaml"):
        parse_catalogue({"a.yaml": GOOD_SENSOR, "b.yaml": GOOD_SENSOR})


def test_invalid_yaml_names_the_file() -> None:
    error = problems_of("PV_Power: [unclosed\n", filename="syntax.yaml")
    assert "syntax.yaml: not valid YAML" in error


def test_document_must_be_a_mapping() -> None:
    assert "expected a mapping" in problems_of("- PV_Power\n- SOC\n")


def test_every_problem_is_reported_at_once() -> None:
    error = problems_of(
        """
        Target_SOC:
          platform: number
        Eco_Mode:
          platform: switch
        """
    )
    assert "Target_SOC" in error and "Eco_Mode" in error
