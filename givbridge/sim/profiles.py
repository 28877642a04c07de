"""What each simulated GivEnergy model looks like on the wire, as data.

A :class:`InverterProfile` says which device type code and firmware a model reports, which
register banks it answers (and which it ignores outright), its factory configuration, its
schedule layout, which writes it accepts and which battery-energy registers its firmware
fills, what storage hangs off it (LV packs, an HV stack, or the units an EMS or Gateway
manages), which meters a site usually has and which registers its battery logic obeys.
Everything a new family needs is a new entry in :data:`PROFILES`; the plant, physics and
renderers read these fields and nothing model-specific lives elsewhere. What a profile is
lives in :mod:`givbridge.sim.profile_spec`, the pieces families share in
:mod:`givbridge.sim.profile_parts`.

Where the values come from (facts only; serials, clocks and lifetime totals are our own):

- ``hybrid-gen1``: the HYBRID_GEN1 captures (DTC 0x2001, ARM/DSP 449, two LV packs): identity,
  the HR(0-179) configuration, IR(221-227)/IR(240-246) constants, the battery-energy layout
  (IR36/37 and IR182/183 daily, IR180/181 lifetime) and the pack banks (BMS firmware 3007,
  160 Ah). It answers no HR bank above 179: HR(300,60) and HR(540,60) time out (library
  issues #162 and #179) and GivTCP's HR(180)/HR(240) probes go unanswered in the captures.
- ``hybrid-gen2``: the HYBRID_GEN2 capture (DTC 0x2003, ARM/DSP 920, one 186 Ah pack on BMS
  firmware 3020 that fills the pack lifetime energy registers): identity and HR(0-179).
  IR36/37 carry the daily battery energy, IR180/181 read zero (library manifest note).
  The HR(300-359) block is taken from the AC-coupled capture, because GivTCP reads and
  writes the pause registers HR318-320 on Gen2 (it only excludes Gen1 and AC).
- ``hybrid-gen3``: no LV Gen3 capture exists, so this is the Gen2 configuration with Gen3
  identity (DTC 0x2001, ARM > 302 so the library and GivTCP both use the 10-slot map) and
  the HR(240-299) slot/target layout as the All-in-One and HV Gen3 captures report it. It
  fills IR194-197 (battery lifetime totals, protocol v4.1.5) as the HV Gen3 and All-in-One
  captures do; an LV Gen3 has not been seen doing it.
- ``hybrid-gen3-plus``, ``hybrid-gen4``, ``polar``, ``pv``: no capture of any of them. They
  are the Gen3 profile with the family's device type code from the library's rating table
  (0x2201, 0x8304, 0x2101, 0x2301) and invented firmware numbers; Gen3+ and Polar keep the
  2-slot map the library gives their models, Gen4 has the 10-slot map. Polar's battery
  rating (3.6 kW) is an assumption (the library has none); Gen4's 6 kW is GivTCP's. The PV
  inverter is the hybrid platform without a battery port: no packs, nothing charges.
- ``ac``: the AC-coupled captures (DTC 0x3001, ARM 282, DSP 291, one Giv-Bat 5.12 Gen3 or
  two Giv-Bat 5.2): HR(0-179) and HR(300-359), the register file at 0x31 and 0x32 as well
  as 0x11, blank BMS pages at 0x30 and every empty pack slot, no PV of its own (IR1/2,
  IR11/12 and IR17-20 read zero: the site's PV inverter is separate).
- ``aio``: the All-in-One captures (DTC 0x8001, ARM/DSP 620): HR(0-179) and HR(240-359);
  the 1000-range answers with an error (captured HR(1100,60), library #105); nothing at
  0x32. The battery is an HV stack: BMS summary at 0xA0, one BCU at 0x70 (firmware
  BAAA0013, IR(60-179)), four 24-cell modules at 0x50-0x53 with 12 temperature sensors
  each. PV is AC-coupled but metered by the unit, so IR18/20 and the PV counters carry it.
- ``hybrid-hv-gen3``: the GIV-HY-8.0-G3-HV capture (DTC 0x8102): HR(240-299), the
  1000-range answering zeros (HR1060-1124, IR1000-1413: library hass#295), one BCU
  (BABA0009) with three 24-cell modules carrying 24 temperature sensors, a meter at 0x01.
  The capture has no HR(0-179) and no firmware numbers: those are the Gen3 ones.
- ``hybrid-3ph``: the GIV-3HY-11 captures (DTC 0x4004): HR(0-179) and HR(1000-1124), IR(0-59)
  and IR(120-239) answering zeros, the IR(1000-1419) three-phase banks, firmware only in
  IR1317-1327 (HR19/HR21 read 0), a BCU with six modules at 0x50-0x55, the BAMS page at
  0x90, two meters and blank pages at the other meter addresses.
- ``ac-3ph``: no capture. The three-phase profile with an AC-coupled device type (0x6003)
  and the HR(300-359) block the library polls on that model.
- ``ems``: the EMS captures (DTC 0x5001, ARM 1036): HR(0-179) and HR(2040-2075), IR(0-59),
  IR(180-239) and the IR(2040-2099) rollup of two managed AC inverters, meters at 0x01 and
  0x03 and blank pages at the other meter addresses. The managed inverters and their
  batteries sit on their own dongles; this one only reports them.
- ``gateway``: the Gateway captures (DTC 0x7001, firmware GAAA0014): HR(0-359), IR(0-59) and
  IR(120-239) answering zeros, the IR(1600-1959) rollup of two parallel All-in-Ones, two
  meters (grid and PV) and blank pages at the other meter addresses; nothing at 0x32.

Not simulated, for want of any fact: ``aio-hybrid`` (DTC 82xx), ``aio-commercial`` (41xx) and
``ems-commercial`` (51xx).

Two behaviours come straight from the captures and differ from a naive reading of the
protocol: the inverter answers at legacy addresses as well as 0x11 (0x31 on Gen1/AC, 0x32
on the LV hybrids, where IR(60-119) is battery pack 1), and an unpopulated battery slot
(0x32-0x37) answers IR(60,60) with an empty bank rather than staying silent. Battery
responses carry the *inverter's* serial in the envelope: the inverter answers from its own
cache of the BMS pages.
"""

from __future__ import annotations

from givbridge.sim import captured
from givbridge.sim.profile_parts import (
    AIO_STACK,
    DISCHARGE_TARGETS_1_2,
    EMPTY_PACK_SLOTS,
    EMS_CHARGE,
    EMS_CONTROLS,
    EMS_DISCHARGE,
    EMS_EXPORT,
    EMS_MANAGED_AC,
    GATEWAY_AIO,
    GATEWAY_CONTROLS,
    GIVBAT_5_12_GEN3,
    GIVBAT_8_2,
    GIVBAT_9_5,
    GIVBAT_9_5_GEN3,
    HR_AC_CONFIG_BLOCK,
    HR_GEN1_OVERRIDES,
    HR_GEN3,
    HR_HYBRID_BASE,
    HV_BMU_STACK,
    PAUSE_CONTROLS,
    PAUSE_REGISTERS,
    TEN_SLOT_EXTRAS,
    TEN_SLOTS_CHARGE,
    TEN_SLOTS_DISCHARGE,
    TWO_SLOTS_CHARGE,
    TWO_SLOTS_DISCHARGE,
    frozen_registers,
    gen3_like_profile,
    register_ranges,
    three_phase_profile,
)
from givbridge.sim.profile_spec import (
    BatteryEnergyLayout,
    InverterProfile,
    Layout,
)

PROFILES: dict[str, InverterProfile] = {
    p.family: p
    for p in (
        InverterProfile(
            family="hybrid-gen1",
            layout=Layout.SINGLE_PHASE,
            device_type_code=0x2001,
            arm_firmware=449,
            dsp_firmware=449,
            rated_power_w=5000,
            serial_prefix="SA",
            serial_week="2114",
            dongle_prefix="WF",
            inverter_aliases=(0x31, 0x32),
            empty_bms_addresses=EMPTY_PACK_SLOTS,
            holding_served=register_ranges((0, 180)),
            holding_silent=register_ranges((180, 360), (540, 600)),
            input_served=register_ranges((0, 300)),
            input_silent=(),
            holding_defaults=frozen_registers({**HR_HYBRID_BASE, **HR_GEN1_OVERRIDES}),
            input_constants=frozen_registers({227: 300, 246: 80}),
            charge_slots=TWO_SLOTS_CHARGE,
            discharge_slots=TWO_SLOTS_DISCHARGE,
            extra_writable=frozenset(),
            unpersisted_writes=DISCHARGE_TARGETS_1_2,
            battery_energy=BatteryEnergyLayout(today_ir36=True, today_ir182=True, total_ir180=True),
            reports_combined_generation=False,
            pack=GIVBAT_8_2,
            pv_kwp=5.2,
            years_in_service=4.5,
        ),
        InverterProfile(
            family="hybrid-gen2",
            layout=Layout.SINGLE_PHASE,
            device_type_code=0x2003,
            arm_firmware=920,
            dsp_firmware=920,
            rated_power_w=3600,
            serial_prefix="EA",
            serial_week="2302",
            dongle_prefix="WG",
            inverter_aliases=(0x32,),
            # 0x31 answers an empty LV BCU page on Gen2 (capture); with no BCU modelled it stays empty.
            empty_bms_addresses=(0x31, *EMPTY_PACK_SLOTS),
            holding_served=register_ranges((0, 360)),
            holding_silent=register_ranges((540, 600)),
            input_served=register_ranges((0, 300)),
            input_silent=(),
            holding_defaults=frozen_registers({**HR_HYBRID_BASE, 3: 0, **HR_AC_CONFIG_BLOCK}),
            input_constants=frozen_registers({221: 8192, 227: 300}),
            charge_slots=TWO_SLOTS_CHARGE,
            discharge_slots=TWO_SLOTS_DISCHARGE,
            extra_writable=PAUSE_REGISTERS,
            unpersisted_writes=DISCHARGE_TARGETS_1_2,
            battery_energy=BatteryEnergyLayout(today_ir36=True),
            reports_combined_generation=False,
            pack=GIVBAT_9_5,
            pv_kwp=4.4,
            years_in_service=3.0,
            controls=PAUSE_CONTROLS,
        ),
        InverterProfile(
            family="hybrid-gen3",
            layout=Layout.SINGLE_PHASE,
            device_type_code=0x2001,
            arm_firmware=310,
            dsp_firmware=310,
            rated_power_w=5000,
            serial_prefix="SD",
            serial_week="2314",
            dongle_prefix="WG",
            inverter_aliases=(0x32,),
            empty_bms_addresses=(0x31, *EMPTY_PACK_SLOTS),
            holding_served=register_ranges((0, 360)),
            holding_silent=register_ranges((540, 600)),
            input_served=register_ranges((0, 300)),
            input_silent=(),
            holding_defaults=frozen_registers(HR_GEN3),
            input_constants=frozen_registers({221: 8192, 227: 300}),
            charge_slots=TEN_SLOTS_CHARGE,
            discharge_slots=TEN_SLOTS_DISCHARGE,
            extra_writable=PAUSE_REGISTERS | TEN_SLOT_EXTRAS,
            unpersisted_writes=frozenset(),
            battery_energy=BatteryEnergyLayout(today_ir36=True, total_ir194=True),
            reports_combined_generation=True,
            pack=GIVBAT_9_5_GEN3,
            pv_kwp=5.6,
            years_in_service=1.5,
            controls=PAUSE_CONTROLS,
        ),
        gen3_like_profile(
            "hybrid-gen3-plus",
            device_type_code=0x2201,
            firmware=401,
            ten_slots=False,  # Model.HYBRID has no extended-slot entry in the library's manifest
            serial_prefix="SE",
            serial_week="2344",
            pack=GIVBAT_9_5_GEN3,
        ),
        gen3_like_profile(
            "hybrid-gen4",
            device_type_code=0x8304,
            firmware=101,
            ten_slots=True,
            serial_prefix="SF",
            serial_week="2440",
            pack=GIVBAT_9_5_GEN3,
            battery_max_w=6000,
        ),
        gen3_like_profile(
            "polar",
            device_type_code=0x2101,
            firmware=201,
            ten_slots=False,
            serial_prefix="PA",
            serial_week="2420",
            pack=GIVBAT_9_5_GEN3,
            battery_max_w=3600,
            combined_generation=False,
        ),
        gen3_like_profile(
            "pv",
            device_type_code=0x2301,
            firmware=301,
            ten_slots=False,
            serial_prefix="SP",
            serial_week="2330",
            pack=None,
            pause=False,
            combined_generation=False,
            years=2.0,
        ),
        InverterProfile(
            family="ac",
            layout=Layout.SINGLE_PHASE,
            device_type_code=0x3001,
            arm_firmware=282,
            dsp_firmware=291,
            rated_power_w=3000,
            serial_prefix="CE",
            serial_week="2231",
            dongle_prefix="FO",
            inverter_aliases=(0x31, 0x32),
            empty_bms_addresses=(0x30, *EMPTY_PACK_SLOTS),
            holding_served=register_ranges((0, 360)),
            holding_silent=register_ranges((540, 600)),
            input_served=register_ranges((0, 300)),
            input_silent=(),
            holding_defaults=frozen_registers(captured.AC),
            input_constants=frozen_registers({221: 8192, 227: 300}),
            charge_slots=TWO_SLOTS_CHARGE,
            discharge_slots=TWO_SLOTS_DISCHARGE,
            extra_writable=frozenset(),
            unpersisted_writes=DISCHARGE_TARGETS_1_2,
            battery_energy=BatteryEnergyLayout(today_ir36=True),
            reports_combined_generation=False,
            pack=GIVBAT_5_12_GEN3,
            pv_kwp=4.0,
            years_in_service=3.5,
            default_batteries=1,
            pv_coupling="ac",
            reports_pv=False,
        ),
        InverterProfile(
            family="aio",
            layout=Layout.SINGLE_PHASE,
            device_type_code=0x8001,
            arm_firmware=620,
            dsp_firmware=620,
            rated_power_w=6000,
            serial_prefix="CH",
            serial_week="2414",
            dongle_prefix="WJ",
            inverter_aliases=(),
            empty_bms_addresses=(),
            holding_served=register_ranges((0, 180), (240, 360)),
            holding_silent=(),
            input_served=register_ranges((0, 60), (120, 240)),
            input_silent=(),
            holding_defaults=frozen_registers(captured.AIO),
            input_constants=frozen_registers({221: 8192, 227: 300}),
            charge_slots=TEN_SLOTS_CHARGE,
            discharge_slots=TEN_SLOTS_DISCHARGE,
            extra_writable=PAUSE_REGISTERS | TEN_SLOT_EXTRAS,
            unpersisted_writes=frozenset(),
            battery_energy=BatteryEnergyLayout(today_ir36=True, total_ir194=True),
            reports_combined_generation=False,
            pack=None,
            hv=AIO_STACK,
            pv_kwp=4.8,
            years_in_service=2.0,
            controls=PAUSE_CONTROLS,
            default_batteries=4,
            max_batteries=4,  # the library probes at most 0x50-0x53 on an All-in-One
            ghost_meter_pages=True,
            pv_coupling="ac",
        ),
        InverterProfile(
            family="hybrid-hv-gen3",
            layout=Layout.SINGLE_PHASE,
            device_type_code=0x8102,
            arm_firmware=310,
            dsp_firmware=310,
            rated_power_w=8000,
            serial_prefix="FG",
            serial_week="2444",
            dongle_prefix="WH",
            inverter_aliases=(),
            empty_bms_addresses=(),
            holding_served=register_ranges((0, 300), (1000, 1125)),
            holding_silent=(),
            input_served=register_ranges((0, 300), (1000, 1414)),
            input_silent=(),
            holding_defaults=frozen_registers({**HR_HYBRID_BASE, 3: 0x0201, 5: 50000, **captured.HV_GEN3_SLOTS}),
            input_constants=frozen_registers({221: 8192, 227: 300}),
            charge_slots=TEN_SLOTS_CHARGE,
            discharge_slots=TEN_SLOTS_DISCHARGE,
            extra_writable=TEN_SLOT_EXTRAS,
            unpersisted_writes=frozenset(),
            battery_energy=BatteryEnergyLayout(today_ir36=True, total_ir194=True),
            reports_combined_generation=False,
            pack=None,
            hv=HV_BMU_STACK,
            pv_kwp=6.5,
            years_in_service=1.5,
            default_batteries=3,
            default_meters=(0x01,),
        ),
        three_phase_profile("hybrid-3ph", 0x4004, ac_coupled=False),
        three_phase_profile("ac-3ph", 0x6003, ac_coupled=True),
        InverterProfile(
            family="ems",
            layout=Layout.EMS,
            device_type_code=0x5001,
            arm_firmware=1036,
            dsp_firmware=0,
            rated_power_w=0,  # set from the managed units: the EMS converts nothing itself
            serial_prefix="EMS",
            serial_week="2522",
            serial_letter="",
            dongle_prefix="FO",
            inverter_aliases=(),
            empty_bms_addresses=(),
            holding_served=register_ranges((0, 180), (2040, 2076)),
            holding_silent=(),
            input_served=register_ranges((0, 60), (180, 240), (2040, 2100)),
            input_silent=(),
            holding_defaults=frozen_registers(captured.EMS),
            input_constants=frozen_registers({}),
            charge_slots=EMS_CHARGE,
            discharge_slots=EMS_DISCHARGE,
            export_slots=EMS_EXPORT,
            extra_writable=frozenset({2073}),  # car charge boost: in GivTCP's EMS map, not the library's allowlist
            unpersisted_writes=frozenset(),
            battery_energy=BatteryEnergyLayout(today_ir36=False),
            reports_combined_generation=False,
            pack=None,
            unit=EMS_MANAGED_AC,
            pv_kwp=4.0,
            years_in_service=1.0,
            controls=EMS_CONTROLS,
            default_batteries=2,
            max_batteries=4,  # the rollup has four inverter slots
            default_meters=(0x01, 0x03),
            ghost_meter_pages=True,
            pv_coupling="ac",
            reports_pv=False,
            reports_capacity_ah=False,
        ),
        InverterProfile(
            family="gateway",
            layout=Layout.GATEWAY,
            device_type_code=0x7001,
            arm_firmware=14,
            dsp_firmware=0,
            rated_power_w=12000,
            serial_prefix="GW",
            serial_week="2412",
            dongle_prefix="WJ",
            inverter_aliases=(),
            empty_bms_addresses=(),
            holding_served=register_ranges((0, 360)),
            holding_silent=(),
            input_served=register_ranges((0, 60), (120, 240), (1600, 1960)),
            input_silent=(),
            holding_defaults=frozen_registers(captured.GATEWAY),
            input_constants=frozen_registers({}),
            charge_slots=TEN_SLOTS_CHARGE,
            discharge_slots=TEN_SLOTS_DISCHARGE,
            # GivTCP writes the rates to HR313/314 and the ten per-slot targets on a Gateway.
            extra_writable=frozenset({313, 314}) | PAUSE_REGISTERS | TEN_SLOT_EXTRAS,
            unpersisted_writes=frozenset(),
            battery_energy=BatteryEnergyLayout(today_ir36=False),
            reports_combined_generation=False,
            pack=None,
            unit=GATEWAY_AIO,
            pv_kwp=5.0,
            years_in_service=1.5,
            controls=GATEWAY_CONTROLS,
            default_batteries=2,
            max_batteries=3,  # the rollup has three All-in-One slots
            default_meters=(0x01, 0x02),
            ghost_meter_pages=True,
            pv_coupling="ac",
            reports_pv=False,
            reports_capacity_ah=False,
        ),
    )
}


def profile_for(family: str) -> InverterProfile:
    """The simulator profile of a family key, or a ValueError naming the ones that exist."""
    try:
        return PROFILES[family]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"no simulator profile for {family!r}; simulated families: {known}") from None
