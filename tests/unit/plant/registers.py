"""Synthetic register caches for snapshot tests.

Each factory returns the register caches of one plant, keyed by Modbus device address, in
the shape givenergy-modbus holds after polling (``Plant.from_caches`` turns them into a
detected Plant). The base blocks are real readings from field captures (a Gen1 hybrid with
two packs, a Gen2 hybrid with an EM115 meter, an AC-coupled unit) with serials replaced;
each factory then sets the registers its tests are about, by number, so the expected values
in the tests can be checked against the comments here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from givenergy_modbus.model.plant import Plant
from givenergy_modbus.model.register import HR, IR
from givenergy_modbus.model.register_cache import RegisterCache

INVERTER = 0x11
METER_1 = 0x01
PACK_1, PACK_2 = 0x32, 0x33

# --- real blocks (60 registers each) ------------------------------------------------------------

# Gen1 hybrid, ARM 449, 2 packs; 12:19 on a sunny June day, charging from PV.
GEN1_HR_0 = [8193, 3, 2098, 513, 0, 50000, 3600, 1, 16967, 12849, 13108, 18224, 12336, 21313, 12849, 12596, 18224, 12336, 3007, 449, 1, 449, 2, 0, 32768, 30235, 6000, 1, 0, 0, 17, 0, 4, 7, 140, 26, 6, 5, 12, 19, 53, 1, 2, 0, 0, 0, 101, 1, 0, 0, 100, 0, 0, 1, 1, 346, 0, 0, 1, 0]  # fmt: skip  # noqa: E501
GEN1_HR_60 = [1500, 30, 30, 1840, 2740, 4700, 5198, 126, 27, 24, 28, 1840, 2620, 4745, 5200, 126, 52, 1, 28, 1755, 2837, 4700, 5200, 2740, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2330, 530, 1, 4320, 5850, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 1, 4, 50, 50, 0, 4, 0, 29, 0, 0, 0]  # fmt: skip  # noqa: E501
GEN1_HR_120 = [0, 0, 0, 24, 0, 1, 0, 0, 1, 1, 255, 20000, 255, 20000, 255, 20000, 255, 20000, 2484, 2530, 2116, 2070, 20, 5, 2415, 2300] + [0] * 34  # fmt: skip  # noqa: E501
GEN1_IR_0 = [1, 3722, 3782, 3955, 0, 2435, 4, 34141, 71, 63, 171, 3, 14855, 5011, 2, 3093, 10980, 106, 2565, 88, 2356, 0, 52491, 0, 3371, 56, 10, 1, 25353, 0, 64815, 293, 4, 24429, 0, 0, 88, 65, 0, 0, 0, 481, 4092, 1553, 158, 4, 9957, 0, 36316, 1, 5387, 64299, 64599, 2416, 5008, 485, 230, 0, 770, 83]  # fmt: skip  # noqa: E501
GEN1_IR_180 = [15711, 18430, 65, 88] + [0] * 43 + [300] + [0] * 12
GEN1_PACK_1 = [3366, 3374, 3380, 3380, 3388, 3406, 3378, 3382, 3372, 3378, 3387, 3378, 3374, 3366, 3367, 3375, 233, 218, 225, 208, 54076, 270, 0, 54288, 0, 18961, 0, 16000, 0, 15449, 0, 1552, 0, 0, 0, 0, 1114, 16, 3007, 0, 81, 0, 16000, 233, 218, 0, 0, 0, 0, 0, 16967, 12849, 13108, 18224, 12336, 8, 0, 0, 0, 0]  # fmt: skip  # noqa: E501
GEN1_PACK_2 = [3367, 3370, 3367, 3369, 3372, 3369, 3374, 3374, 3372, 3374, 3370, 3374, 3378, 3375, 3377, 3375, 224, 226, 223, 216, 54155, 252, 0, 54169, 0, 15088, 0, 18600, 0, 11959, 0, 1552, 0, 0, 0, 0, 823, 16, 3009, 0, 79, 0, 18600, 226, 223, 0, 0, 0, 0, 0, 17498, 12850, 12856, 18224, 12336, 8, 0, 0, 0, 0]  # fmt: skip  # noqa: E501

# Gen2 hybrid, ARM 920, one pack and an EM115 grid meter at address 1; 23:22, discharging.
GEN2_HR_0 = [8195, 3, 2084, 0, 0, 36000, 3600, 1, 17478, 12850, 13364, 18224, 12336, 17729, 12851, 12338, 18224, 12336, 3020, 920, 0, 920, 2, 0, 49152, 66, 6000, 1, 0, 0, 17, 1, 4, 7, 140, 26, 7, 13, 23, 22, 19, 0, 2, 0, 0, 0, 101, 1, 0, 0, 100, 0, 0, 1, 1, 186, 0, 0, 1, 0]  # fmt: skip  # noqa: E501
GEN2_HR_60 = [1300, 30, 30, 1840, 2622, 4750, 5200, 125, 50, 1000, 25, 1800, 2730, 4700, 5200, 122, 25, 25, 25, 1880, 2580, 4760, 5190, 2622, 21313, 12590, 12288, 0, 0, 0, 0, 0, 0, 0, 2330, 530, 1, 4320, 5850, 0, 0, 100, 0, 0, 0, 0, 0, 0, 6, 1, 4, 16, 50, 0, 4, 1, 100, 0, 0, 0]  # fmt: skip  # noqa: E501
GEN2_IR_0 = [1, 0, 108, 4279, 0, 2445, 1, 8441, 0, 0, 17, 0, 64399, 4998, 5, 2848, 9740, 122, 0, 123, 0, 1, 14994, 0, 371, 189, 227, 0, 34139, 0, 65531, 0, 4, 52434, 0, 48, 47, 55, 0, 0, 0, 374, 376, 525, 286, 1, 24821, 0, 11243, 1, 5239, 818, 441, 2412, 4999, 394, 230, 0, 214, 46]  # fmt: skip  # noqa: E501
GEN2_METER = [2446, 0, 0, 214, 0, 0, 0, 0, 65532, 0, 0, 0, 0, 0, 0, 0, 525, 0, 0, 0, 10050, 0, 0, 0, 4998, 52434, 0, 14994, 0, 0]  # fmt: skip  # noqa: E501

# AC-coupled, ARM 282, one 5.1 kWh pack; HR(0..59), the HR(300..359) AC config block, IR(0..59).
AC_HR_0 = [12289, 3, 2078, 0, 0, 60, 3600, 0, 16707, 12336, 12336, 18224, 12336, 17221, 12850, 13105, 18224, 12336, 4009, 291, 1, 282, 2, 0, 49152, 6, 6000, 0, 0, 0, 17, 1, 4, 7, 140, 26, 5, 28, 19, 19, 36, 0, 2, 0, 0, 0, 101, 1, 0, 0, 2, 0, 0, 1, 1, 106, 0, 2359, 1, 0]  # fmt: skip  # noqa: E501
AC_HR_300 = [10, 150, 5000, 15000, 0, 0, 6000, 2300, 3000, 60, 100, 0, 15000, 100, 100, 1150, 2760, 1, 0, 0, 0, 5030, 0, 0, 0, 0, 4980, 40, 5010] + [0] * 31  # fmt: skip  # noqa: E501
AC_IR_0 = [1, 0, 0, 3809, 0, 2423, 0, 56898, 0, 0, 2, 0, 0, 4990, 2, 2866, 1000, 0, 0, 0, 0, 0, 34, 0, 65535, 0, 0, 0, 32228, 0, 0, 0, 0, 35, 0, 76, 74, 64, 0, 0, 0, 420, 0, 0, 63, 0, 26438, 0, 9683, 1, 5229, 0, 0, 2423, 4990, 426, 270, 0, 0, 39]  # fmt: skip  # noqa: E501


def serial_registers(serial: str) -> list[int]:
    """A 10-character serial as the five big-endian ASCII register pairs GivEnergy uses."""
    assert len(serial) == 10
    return [ord(serial[i]) << 8 | ord(serial[i + 1]) for i in range(0, 10, 2)]


def signed(value: int) -> int:
    """The uint16 register holding a signed value."""
    return value & 0xFFFF


@dataclass
class Device:
    """Holding and input registers of one Modbus device address."""

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)

    def hr_block(self, base: int, values: Iterable[int]) -> Device:
        self.holding.update({base + i: v for i, v in enumerate(values)})
        return self

    def ir_block(self, base: int, values: Iterable[int]) -> Device:
        self.input.update({base + i: v for i, v in enumerate(values)})
        return self

    def hr(self, **registers: int) -> Device:
        """Set holding registers by number: ``hr(r116=80)``."""
        self.holding.update({int(name[1:]): value for name, value in registers.items()})
        return self

    def ir(self, **registers: int) -> Device:
        self.input.update({int(name[1:]): value for name, value in registers.items()})
        return self

    def cache(self) -> RegisterCache:
        registers = {HR(n): v for n, v in self.holding.items()} | {IR(n): v for n, v in self.input.items()}
        return RegisterCache(registers)


def plant_from(devices: Mapping[int, Device]) -> Plant:
    return Plant.from_caches({address: device.cache() for address, device in devices.items()})


def pack(block: list[int], serial: str) -> Device:
    return Device().ir_block(60, block).ir_block(110, serial_registers(serial))


# --- plants ---------------------------------------------------------------------------------


def gen1_two_packs() -> dict[int, Device]:
    """Gen1 hybrid SA2114G001, 5 kW, 346 Ah (17.72 kWh), two LV packs, no meter.

    Live values (from the capture): PV 2565 + 2356 W, grid -721 W (importing), load 4092 W,
    battery -937 W (charging), SOC 83 %; clock 2026-06-05 12:19:53 (local, BST).
    Settings: eco on, timed discharge off, reserve 4 %, target 29 %, rates HR111/112 = 50.
    Today: PV 10.6 + 8.8, import 1.0, export 5.6, AC charge 0.0, IR44 15.8; battery charge
    8.8 / discharge 6.5 (IR183/182, the registers the library routes for Gen1).
    The packs' lifetime counters read 0 (old BMS firmware), so totals come from IR181/180.
    """
    inverter = (
        Device()
        .hr_block(0, GEN1_HR_0)
        .hr_block(60, GEN1_HR_60)
        .hr_block(120, GEN1_HR_120)
        .ir_block(0, GEN1_IR_0)
        .ir_block(180, GEN1_IR_180)
        .hr_block(13, serial_registers("SA2114G001"))
    )
    return {
        INVERTER: inverter,
        PACK_1: pack(GEN1_PACK_1, "BG2134G001"),
        PACK_2: pack(GEN1_PACK_2, "DZ2228G002"),
    }


def gen3_ten_slots() -> dict[int, Device]:
    """Gen3 hybrid SA2301G003 on ARM 310 (10-slot firmware), 186 Ah (9.52 kWh), one pack, meter 1.

    Built on the Gen2 readings (discharging 441 W into a 376 W load at 23:22) with Gen3
    firmware, the HR(240..299) slot block, the HR(318..320) pause registers and IR(247/248).
    Slot 2 charges 17:30-18:30 (HR243/244), slot 3 13:00-14:30 to 80 %; discharge slot 3 runs 16:00-19:00 down to 20 %;
    discharge slot 4 holds the 60 "unset" sentinel; pause mode 2 (PauseDischarge) 16:00-19:00.
    Only HR318-320 of the AC config block are present: a DC hybrid has no HR313/314.
    """
    slot_block = [0] * 60  # HR240..299: every slot 00:00-00:00, targets 0
    for n in range(1, 11):
        slot_block[242 + 3 * (n - 1) - 240] = 100  # charge_target_soc_n
        slot_block[272 + 3 * (n - 1) - 240] = 4  # discharge_target_soc_n
    inverter = (
        Device()
        .hr_block(0, GEN2_HR_0)
        .hr_block(60, GEN2_HR_60)
        .hr_block(120, GEN1_HR_120)
        .hr_block(240, slot_block)
        .ir_block(0, GEN2_IR_0)
        .ir_block(180, [0] * 60)
        .ir_block(240, [0] * 60)
        .hr_block(13, serial_registers("SA2301G003"))
        .hr(r0=0x2001, r19=310, r21=310)
        .hr(r243=1730, r244=1830)  # charge slot 2 in the 10-slot layout (HR31/32 keep 00:01-00:04)
        .hr(r246=1300, r247=1430, r248=80)  # charge slot 3 and its target
        .hr(r276=1600, r277=1900, r278=20)  # discharge slot 3 and its target
        .hr(r279=60, r280=60)  # discharge slot 4: the "unset" sentinel
        .hr(r318=2, r319=1600, r320=1900)
        .ir(r247=0, r248=412)  # combined generation, uint32 high/low
    )
    return {
        INVERTER: inverter,
        PACK_1: pack(GEN1_PACK_2, "DF2244G003"),
        # The captured phase-1 power factor read 1.005, which the library rejects; use 0.985.
        METER_1: Device().ir_block(60, GEN2_METER).ir(r80=9850),
    }


def ac_one_pack() -> dict[int, Device]:
    """AC-coupled CE2231G004, 3 kW, 106 Ah (5.43 kWh), one pack, AC config block read.

    Charging the battery from the grid: inverter terminal -1500 W (IR24), battery -1450 W,
    grid -1900 W (importing), load 400 W. HR313/314 AC rate limits 100 %, HR318 pause 0.
    Settings HR60..119 as on the Gen1 (rates 50, reserve 4, target 29) with eco off and timed
    discharge off ("Export (Paused)").
    """
    inverter = (
        Device()
        .hr_block(0, AC_HR_0)
        .hr_block(60, GEN1_HR_60)
        .hr_block(120, GEN1_HR_120)
        .hr_block(300, AC_HR_300)
        .ir_block(0, AC_IR_0)
        .hr_block(13, serial_registers("CE2231G004"))
        .ir(r24=signed(-1500), r52=signed(-1450), r30=signed(-1900), r42=400)
    )
    return {INVERTER: inverter, PACK_1: pack(GEN1_PACK_1, "AC2312G004")}
