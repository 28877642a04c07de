"""Synthetic register caches for the three-phase, HV, EMS and Gateway snapshot tests.

Register values are real readings from the givenergy-modbus fixture captures (given in
each block's comment), stored sparsely: the non-zero registers of each bank the library
reads, every other register of those banks zero. Serials are our own, set by the
factories. As in :mod:`registers`, each factory documents the live values its tests assert.
"""

from __future__ import annotations

from tests.unit.plant.registers import Device, serial_registers

INVERTER = 0x11
BMS, BCU, FIRST_MODULE = 0xA0, 0x70, 0x50

# --- real banks, sparse -----------------------------------------------------------------------

# GIV-3HY-11 (giv3hy11_da011_detect): HR(0-179) and HR(1000-1124), IR(0-59), IR(120-239) and
# IR(1000-1419), its BCU (IR60-179, serial left out), module 0x50 and the grid meter at 0x01.
THREE_PHASE_HR: dict[int, int] = {
    0: 16388, 7: 3, 22: 2, 24: 900, 30: 17, 35: 26, 36: 7, 37: 9, 38: 21, 39: 20, 40: 29, 50: 100, 53: 1,
    56: 100, 57: 100, 59: 1, 94: 100, 95: 100, 96: 1, 99: 20000, 100: 20000, 111: 1, 112: 1, 1000: 43338,
    1002: 100, 1003: 60, 1004: 10000, 1005: 1, 1006: 1200, 1007: 70, 1008: 70, 1009: 100, 1011: 100,
    1012: 45467, 1013: 777, 1014: 90, 1017: 1, 1018: 3187, 1019: 4382, 1020: 4750, 1021: 5150, 1022: 2788,
    1023: 4382, 1024: 4600, 1025: 5400, 1030: 3386, 1031: 4382, 1032: 4950, 1033: 5020, 1034: 100, 1035: 100,
    1036: 8, 1037: 3, 1038: 100, 1039: 100, 1040: 3, 1041: 3, 1042: 4382, 1044: 60, 1045: 5020, 1046: 40,
    1047: 20, 1048: 5, 1049: 4183, 1050: 3984, 1051: 40, 1052: 3, 1054: 255, 1055: 20000, 1056: 255,
    1057: 20000, 1058: 255, 1059: 20000, 1060: 255, 1061: 20000, 1064: 4980, 1065: 4600, 1066: 5200, 1069: 5010,
    1070: 1500, 1071: 1992, 1072: 4780, 1073: 5010, 1074: 4990, 1075: 1500, 1078: 5, 1079: 250, 1080: 1,
    1081: 4302, 1082: 4382, 1083: 3665, 1084: 3585, 1085: 436, 1086: 600, 1087: 600, 1088: 25, 1089: 115,
    1090: 145, 1091: 32, 1093: 1, 1096: 1, 1097: 1, 1099: 1, 1101: 1, 1102: 17000, 1103: 1, 1105: 1, 1108: 1,
    1109: 5, 1110: 1, 1111: 100, 1113: 100, 1114: 100, 1118: 100, 1119: 100, 1122: 1, 1123: 1,
}  # fmt: skip

THREE_PHASE_IR: dict[int, int] = {
    1034: 270, 1060: 6, 1061: 4017, 1062: 4013, 1063: 4040, 1064: 28, 1065: 26, 1066: 28, 1067: 4998,
    1070: 16060, 1074: 18850, 1075: 1, 1076: 1, 1080: 30, 1084: 65000, 1085: 533, 1086: 549, 1087: 1052,
    1088: 35, 1090: 16360, 1091: 549, 1092: 516, 1093: 541, 1094: 2319, 1095: 2316, 1096: 2332, 1101: 3527,
    1102: 3581, 1121: 1, 1124: 1, 1125: 597, 1126: 6, 1127: 480, 1128: 448, 1129: 410, 1130: 442, 1131: 4718,
    1132: 92, 1133: 4722, 1134: 7097, 1135: 7093, 1137: 17048, 1140: 361, 1180: 4999, 1181: 2318, 1182: 2305,
    1183: 2311, 1245: 270, 1247: 17329, 1249: 17329, 1280: 3, 1282: 36046, 1284: 4, 1289: 1, 1291: 15, 1294: 55,
    1297: 1, 1298: 1, 1317: 23105, 1318: 12590, 1319: 12288, 1320: 23105, 1321: 16705, 1322: 12593, 1323: 12593,
    1324: 12593, 1325: 11043, 1326: 10311, 1327: 11121, 1329: 1, 1330: 1, 1332: 12440, 1337: 32, 1361: 57,
    1362: 1, 1363: 41499, 1364: 1366, 1365: 48010, 1374: 1, 1375: 1064, 1377: 111, 1378: 2, 1379: 13946,
    1381: 198, 1382: 2, 1383: 51424, 1385: 217, 1386: 2, 1387: 13941, 1389: 66, 1390: 1, 1391: 45458, 1393: 91,
    1394: 1, 1395: 56756, 1397: 194, 1398: 1, 1399: 60284, 1401: 254, 1402: 1, 1403: 1064, 1405: 257, 1406: 2,
    1407: 40472, 1409: 162, 1411: 59572, 1413: 254,
}  # fmt: skip

THREE_PHASE_BCU: dict[int, int] = {
    60: 16961, 61: 16961, 63: 9, 64: 6, 67: 144, 68: 72, 69: 3084, 70: 4, 73: 4718, 74: 4738, 76: 65499,
    79: 65520, 80: 23643, 81: 95, 82: 1, 83: 60422, 84: 1, 85: 54220, 86: 3, 87: 55005, 88: 3, 89: 51447,
    91: 95, 93: 79, 95: 195, 97: 166, 98: 520, 99: 450, 100: 483, 101: 3, 102: 3816, 103: 5227, 104: 250,
    105: 250, 110: 1140, 111: 10000, 113: 15, 114: 16, 120: 3309, 121: 4, 122: 23, 123: 3305, 124: 6, 125: 12,
    126: 303, 127: 1, 128: 12, 129: 262, 130: 6, 131: 3, 134: 4, 135: 41, 136: 23644, 137: 284, 143: 16962,
    144: 24385, 145: 12639, 146: 12341,
}  # fmt: skip

THREE_PHASE_MODULE: dict[int, int] = {
    60: 3309, 61: 3309, 62: 3309, 63: 3308, 64: 3309, 65: 3308, 66: 3309, 67: 3309, 68: 3308, 69: 3308,
    70: 3308, 71: 3307, 72: 3309, 73: 3309, 74: 3309, 75: 3308, 76: 3308, 77: 3309, 78: 3308, 79: 3308,
    80: 3309, 81: 3308, 82: 3308, 83: 3308, 90: 301, 91: 300, 92: 298, 93: 301, 94: 302, 95: 302, 96: 303,
    97: 301, 98: 303, 99: 302, 100: 302, 101: 303, 102: 292, 103: 294, 104: 291, 105: 293, 106: 295, 107: 295,
    108: 292, 109: 295, 110: 295, 111: 295, 112: 295, 113: 293,
}  # fmt: skip

THREE_PHASE_METER: dict[int, int] = {
    60: 2313, 61: 2312, 62: 2323, 63: 20, 64: 32, 65: 31, 67: 83, 69: 537, 70: 65002, 71: 3, 72: 65346,
    73: 65283, 74: 65231, 75: 64788, 76: 468, 77: 741, 78: 738, 79: 1947, 80: 10320, 81: 2770, 82: 17210,
    83: 9990, 84: 4990, 85: 15109, 86: 109, 87: 28932, 88: 19188, 95: 3521, 96: 18413, 97: 69, 98: 21332,
    99: 136, 100: 256, 101: 256, 102: 1, 103: 9600,
}  # fmt: skip

# All-in-One, ARM 620 (aio_arm620_redetect): HR(0-179), HR(240-359), IR(0-59), IR(120-239),
# the BCU and module 0x50 (its split serial left out).
AIO_HR: dict[int, int] = {
    0: 32769, 1: 3, 2: 3132, 6: 3600, 7: 1, 18: 13, 19: 620, 21: 620, 22: 2, 24: 49152, 26: 7360, 27: 1, 30: 17,
    31: 1, 33: 7, 34: 140, 35: 26, 36: 7, 37: 8, 38: 23, 39: 4, 40: 14, 42: 3, 46: 13, 47: 1, 50: 100, 53: 1,
    54: 1, 55: 52, 56: 800, 57: 900, 58: 1, 60: 1500, 61: 30, 62: 30, 63: 1840, 64: 2622, 65: 4750, 66: 5200,
    67: 125, 68: 50, 69: 1000, 70: 25, 71: 1800, 72: 2730, 73: 4700, 74: 5200, 75: 122, 76: 25, 77: 25, 78: 25,
    79: 1880, 80: 2580, 81: 4760, 82: 5190, 83: 2622, 84: 21315, 85: 12590, 86: 12288, 97: 20000, 98: 35000,
    99: 20000, 100: 20000, 101: 80, 102: 1, 108: 6, 109: 1, 110: 4, 111: 38, 112: 38, 114: 4, 115: 1, 116: 100,
    123: 24, 124: 1, 125: 1, 128: 1, 129: 1, 130: 255, 131: 20000, 132: 255, 133: 20000, 134: 255, 135: 20000,
    136: 255, 137: 20000, 138: 2484, 139: 2530, 140: 2116, 141: 2070, 142: 20, 143: 5, 144: 2415, 145: 2300,
    166: 1, 167: 1, 176: 7, 177: 1, 178: 1, 242: 100, 245: 100, 248: 100, 251: 100, 254: 100, 257: 100,
    260: 100, 263: 100, 266: 100, 269: 100, 272: 10, 275: 10, 278: 10, 281: 10, 284: 10, 287: 10, 290: 10,
    293: 10, 296: 10, 299: 10, 300: 10, 301: 150, 302: 20000, 303: 15000, 306: 20000, 307: 2300, 308: 7500,
    309: 25, 310: 100, 312: 15000, 313: 50, 314: 100, 315: 1150, 316: 2760, 317: 1, 320: 2359, 321: 5040,
    326: 4980, 327: 24, 328: 5010, 332: 1, 339: 1, 341: 1,
}  # fmt: skip

AIO_IR: dict[int, int] = {
    0: 1, 3: 4279, 5: 2408, 6: 2, 7: 28522, 10: 17, 12: 54972, 13: 5007, 14: 5, 15: 3127, 16: 1000, 17: 155,
    22: 23490, 24: 371, 25: 159, 26: 397, 27: 1, 28: 21002, 29: 512, 30: 65533, 31: 808, 32: 2, 33: 7664,
    35: 150, 36: 151, 37: 92, 41: 376, 42: 795, 43: 369, 44: 84, 45: 1, 46: 6702, 48: 16611, 49: 1, 50: 31278,
    51: 142, 52: 421, 53: 2408, 54: 5007, 55: 376, 56: 229, 58: 290, 59: 42, 194: 1, 195: 13646, 196: 1,
    197: 14876, 221: 8192, 227: 300,
}  # fmt: skip

AIO_BCU: dict[int, int] = {
    60: 16961, 61: 16705, 63: 259, 64: 4, 67: 96, 68: 48, 69: 2056, 70: 4, 73: 3146, 74: 3149, 76: 65524,
    79: 65533, 80: 10792, 81: 95, 83: 20605, 85: 14014, 87: 60869, 89: 48698, 91: 151, 93: 92, 95: 470, 97: 292,
    98: 495, 99: 199, 100: 495, 101: 3, 102: 2544, 103: 3485, 104: 494, 105: 250, 110: 2493, 111: 10000,
    112: 3840, 120: 3272, 121: 2, 122: 22, 123: 3266, 124: 3, 125: 24, 126: 250, 127: 6, 128: 6, 129: 213,
    130: 4, 131: 10, 134: 6, 135: 37, 136: 11813, 137: 229,
}  # fmt: skip

AIO_MODULE: dict[int, int] = {
    60: 3269, 61: 3269, 62: 3269, 63: 3269, 64: 3269, 65: 3270, 66: 3268, 67: 3269, 68: 3269, 69: 3268,
    70: 3269, 71: 3268, 72: 3271, 73: 3272, 74: 3272, 75: 3271, 76: 3272, 77: 3272, 78: 3272, 79: 3272,
    80: 3272, 81: 3272, 82: 3272, 83: 3271, 90: 249, 91: 246, 92: 243, 93: 250, 94: 246, 95: 250, 96: 242,
    97: 245, 98: 244, 99: 241, 100: 244, 101: 246,
}  # fmt: skip

# GIV-HY-8.0-G3-HV (givhy80g3hv_hass295): IR(0-59), IR(180-239), the BCU, module 0x50, meter 0x01.
# The capture holds no HR(0-179): the factory builds it from the Gen2 blocks with this model's identity.
HV_GEN3_IR: dict[int, int] = {
    0: 1, 1: 1276, 2: 3808, 3: 3956, 4: 3956, 5: 2448, 6: 1, 7: 4089, 8: 52, 9: 118, 10: 200, 11: 1, 12: 21863,
    13: 4987, 14: 5, 15: 2400, 16: 19980, 17: 62, 18: 674, 19: 149, 20: 4531, 22: 48560, 23: 500, 24: 4836,
    25: 81, 26: 16, 28: 16550, 29: 512, 30: 4458, 33: 24734, 35: 4, 36: 90, 37: 13, 41: 563, 42: 378, 43: 4477,
    44: 121, 45: 1, 46: 30223, 47: 11034, 49: 1, 50: 24007, 51: 24, 52: 58, 53: 2452, 54: 4987, 55: 463,
    56: 296, 58: 1831, 59: 100, 195: 34010, 197: 35615, 200: 1366, 201: 1363, 202: 1364, 203: 1363, 204: 1366,
    213: 65535, 224: 1, 227: 300,
}  # fmt: skip

HV_GEN3_BCU: dict[int, int] = {
    60: 16961, 61: 16961, 63: 9, 64: 3, 67: 72, 68: 36, 69: 1542, 70: 2, 73: 2382, 74: 2397, 76: 1, 80: 25696,
    81: 97, 83: 37122, 85: 34174, 87: 16214, 89: 7514, 91: 101, 93: 11, 95: 419, 97: 50, 98: 520, 99: 486,
    100: 283, 101: 3, 102: 1908, 103: 2614, 104: 250, 105: 250, 110: 1372, 111: 10000, 113: 15,
}  # fmt: skip

HV_GEN3_MODULE: dict[int, int] = {
    60: 3338, 61: 3337, 62: 3336, 63: 3336, 64: 3338, 65: 3335, 66: 3338, 67: 3336, 68: 3336, 69: 3337,
    70: 3337, 71: 3335, 72: 3337, 73: 3336, 74: 3336, 75: 3338, 76: 3335, 77: 3336, 78: 3338, 79: 3336,
    80: 3337, 81: 3337, 82: 3335, 83: 3336, 90: 304, 91: 301, 92: 295, 93: 302, 94: 307, 95: 305, 96: 296,
    97: 305, 98: 305, 99: 304, 100: 307, 101: 302, 102: 300, 103: 301, 104: 293, 105: 300, 106: 304, 107: 300,
    108: 293, 109: 300, 110: 302, 111: 301, 112: 305, 113: 300,
}  # fmt: skip

HV_GEN3_METER: dict[int, int] = {
    60: 2448, 63: 1831, 68: 61046, 76: 4485, 80: 19980, 84: 4987, 85: 24511, 87: 48904,
}  # fmt: skip

# EMS controller, ARM 1036 (ems_arm1036_60s): HR(0-59), HR(2040-2075), the IR(2040-2099) rollup
# (managed inverters' serials left out) and its meters at 0x01 and 0x03.
EMS_HR: dict[int, int] = {
    0: 20481, 1: 25851, 2: 50, 6: 3600, 21: 1036, 22: 2, 24: 32768, 27: 1, 30: 17, 35: 26, 36: 5, 37: 27,
    38: 23, 39: 5, 40: 37, 50: 100, 53: 1, 56: 2330, 57: 2359, 2040: 1, 2044: 2330, 2045: 2359, 2046: 4,
    2049: 4, 2052: 4, 2055: 100, 2058: 100, 2061: 100, 2062: 2205, 2063: 2330, 2064: 4, 2067: 4, 2070: 4,
    2071: 9500,
}  # fmt: skip

EMS_IR: dict[int, int] = {
    2040: 1, 2041: 2, 2042: 16, 2043: 17, 2044: 2, 2045: 18, 2046: 63702, 2048: 65533, 2054: 1042, 2055: 1469,
    2058: 31, 2059: 16, 2062: 503, 2063: 503, 2086: 677, 2089: 63702, 2090: 2511, 2091: 4105,
}  # fmt: skip

EMS_METER_1: dict[int, int] = {
    60: 2417, 63: 81, 67: 81, 68: 63700, 71: 63700, 72: 64916, 75: 64916, 76: 19604, 79: 19604, 80: 56073,
    83: 56073, 84: 4990, 85: 23728, 86: 560, 87: 55365, 88: 53111,
}  # fmt: skip

EMS_METER_3: dict[int, int] = {
    60: 2421, 63: 3, 67: 3, 68: 65533, 71: 65533, 72: 97, 75: 97, 76: 963, 79: 963, 80: 65242, 83: 65242,
    84: 4985, 85: 2695, 86: 5369, 87: 172, 88: 138,
}  # fmt: skip

# Gateway GAAA0014 (gateway_gaaa0014_10min_daylight): HR(0-179), the IR(1600-1859) rollup
# (All-in-One serials left out) and its grid (0x01) and PV (0x02) meters.
GATEWAY_HR: dict[int, int] = {
    0: 28673, 2: 3132, 7: 3, 21: 14, 26: 7360, 27: 1, 30: 17, 35: 26, 36: 7, 37: 3, 38: 9, 39: 21, 40: 49,
    47: 1, 50: 100, 56: 2235, 57: 1, 84: 18241, 85: 12590, 86: 12288, 95: 500, 101: 80, 102: 1, 110: 4, 114: 4,
    116: 100, 177: 1, 178: 1,
}  # fmt: skip

GATEWAY_IR: dict[int, int] = {
    1600: 18241, 1601: 16705, 1603: 260, 1604: 2, 1605: 8, 1606: 15, 1608: 2417, 1609: 38, 1610: 2423, 1611: 55,
    1612: 82, 1613: 5004, 1614: 5008, 1616: 676, 1617: 1997, 1618: 1109, 1619: 212, 1624: 2412, 1625: 2412,
    1640: 280, 1641: 1, 1642: 61572, 1643: 31, 1645: 50870, 1646: 9, 1648: 21927, 1649: 239, 1650: 1,
    1651: 40239, 1652: 15, 1653: 1, 1654: 4253, 1655: 77, 1656: 1, 1657: 54528, 1658: 18241, 1659: 12590,
    1660: 12288, 1661: 21315, 1662: 12590, 1663: 12288, 1664: 6, 1700: 2, 1701: 2, 1702: 154, 1704: 620,
    1705: 98, 1706: 1, 1707: 13182, 1708: 93, 1710: 9841, 1750: 14, 1751: 1, 1752: 14352, 1753: 6, 1755: 10100,
    1795: 191, 1796: 1, 1797: 23023, 1798: 20, 1799: 1, 1800: 24452, 1801: 94, 1802: 96, 1816: 76, 1817: 85,
}  # fmt: skip

GATEWAY_METER_1: dict[int, int] = {
    60: 2435, 63: 380, 68: 64857, 84: 5000, 85: 6342, 86: 14, 87: 22964, 88: 16220,
}  # fmt: skip

GATEWAY_METER_2: dict[int, int] = {
    60: 2436, 63: 820, 68: 1997, 84: 5000, 85: 56979, 86: 4975, 87: 149,
}  # fmt: skip


# --- plants ---------------------------------------------------------------------------------


def _device(holding: tuple[range, ...], inputs: tuple[range, ...], hr: dict[int, int], ir: dict[int, int]) -> Device:
    """A device whose listed banks were read: zeros everywhere but the given registers."""
    device = Device()
    for bank in holding:
        device.hr_block(bank.start, [0] * len(bank))
    for bank in inputs:
        device.ir_block(bank.start, [0] * len(bank))
    device.holding.update(hr)
    device.input.update(ir)
    return device


def _page(values: dict[int, int], bank: range = range(60, 120)) -> Device:
    return _device((), (bank,), {}, values)


def _serial(device: Device, first: int, serial: str) -> Device:
    return device.ir_block(first, serial_registers(serial))


def three_phase_hybrid() -> dict[int, Device]:
    """GIV-3HY-11 TC2401G011 at 21:20 (BST) on a July night, discharging to cover the house.

    Live values (capture): grid meter import 3.0 W / export 0, per-phase meter power 0 / -536 /
    +533 W (+ export) and inverter power 549 / 516 / 541 W, house load 1636 W, inverter out
    1606 W, battery discharge 1704.8 W at 471.8 V (BMS) and 3.61 A, SOC 92 %; grid 401.7 /
    401.3 / 404.0 V line to line; firmware ZAAA111111 / ZA1.0; HR1109 reserve 5, HR1111 target
    100, HR1122/1123 force discharge/charge on, HR1112 AC charge off, HR1110/1108 AC limits 1 %,
    HR1078 5, HR1005 real-time control on. BCU: 6 modules, 471.8 V, -3.7 A, SOC 92/91, SOH 95,
    nominal 52.0 Ah, remaining 45.0 Ah, 48.3 cycles; today charge 9.5 / discharge 7.9 kWh. One
    of its six modules (0x50, 24 sensors) is in the cache.
    """
    inverter = _device(
        (range(0, 180), range(1000, 1125)),
        (range(0, 60), range(120, 240), range(1000, 1420)),
        THREE_PHASE_HR,
        THREE_PHASE_IR,
    ).hr_block(13, serial_registers("TC2401G011"))
    bcu = _serial(_page(THREE_PHASE_BCU, range(60, 180)), 138, "HB2401G012")
    return {
        INVERTER: inverter,
        BMS: _page({60: 1, 61: 1, 62: 6, 63: 144, 64: 72}),
        BCU: bcu,
        FIRST_MODULE: _serial(_page(THREE_PHASE_MODULE), 114, "HY2401G013"),
        0x01: _page(THREE_PHASE_METER),
    }


def all_in_one() -> dict[int, Device]:
    """All-in-One CH2401G021, ARM 620, at 23:04 (BST), discharging 421 W into a 795 W load.

    Live values (capture): SOC 42 %, battery 312.78 V, HR55 52 Ah (x 307 V = 15.96 kWh), today
    battery charge 15.1 / discharge 9.2 kWh, HR111/112 38. BCU BAAA0013: 4 modules, 314.6 V,
    -1.2 A, SOC 42/40, SOH 95, nominal 49.5 Ah, remaining 19.9 Ah, 49.5 cycles, totals 2060.5 /
    1401.4 kWh. Module 0x50 carries 12 temperature sensors.
    """
    inverter = _device((range(0, 180), range(240, 360)), (range(0, 60), range(120, 240)), AIO_HR, AIO_IR)
    inverter.hr_block(13, serial_registers("CH2401G021")).hr(r55=52)
    return {
        INVERTER: inverter,
        BMS: _page({61: 1, 62: 4, 63: 96, 64: 48}),
        BCU: _serial(_page(AIO_BCU, range(60, 180)), 138, "HC2401G022"),
        FIRST_MODULE: _serial(_page(AIO_MODULE), 114, "HX2401G023"),
    }


def hv_gen3() -> dict[int, Device]:
    """GIV-HY-8.0-G3-HV FG2401G031 on a sunny afternoon: full battery, 5.2 kW PV, exporting.

    Live values (capture): PV 674 + 4531 W, grid +4458 W (export), load 378 W, battery 58 W,
    SOC 100 %, battery 240.07 V. BCU BABA0009: 3 modules, 238.2 V, SOC 100/96, nominal 52.0 Ah.
    HR(0-179) is the Gen2 capture's with this model's identity (no HR bank in the capture):
    HR55 52 Ah, a 3-module stack, so 52 Ah x 3 x 76.8 V = 11.98 kWh.
    """
    from tests.unit.plant.registers import GEN1_HR_120, GEN2_HR_0, GEN2_HR_60

    inverter = (
        _device((range(240, 300),), (range(0, 60), range(120, 240)), {}, HV_GEN3_IR)
        .hr_block(0, GEN2_HR_0)
        .hr_block(60, GEN2_HR_60)
        .hr_block(120, GEN1_HR_120)
        .hr_block(13, serial_registers("FG2401G031"))
        .hr(r0=0x8102, r19=310, r21=310, r55=52)
    )
    return {
        INVERTER: inverter,
        BMS: _page({61: 1, 62: 3, 63: 72, 64: 36}),
        BCU: _page(HV_GEN3_BCU),
        FIRST_MODULE: _serial(_page(HV_GEN3_MODULE), 114, "HY2401G033"),
        0x01: _page(HV_GEN3_METER, range(60, 90)),
    }


def ems_two_inverters() -> dict[int, Device]:
    """EMS EMS2401042 managing CE2401G043 and CE2401G044 at 23:05, exporting from the batteries.

    Live values (capture): battery total +2511 W (1042 + 1469 W, + discharging), grid meter
    -1834 W (its sign: + importing), calculated load 677 W, 4105 Wh left, SOCs 31 / 16 %,
    temperatures 50.3 degC; meters at 0x01 (grid, -1836 W) and 0x03; HR2040 plant control on,
    discharge slot 1 23:30-23:59 to 4 %, export slot 1 22:05-23:30 to 4 %, charge targets 100 %,
    export power limit 9500 W.
    """
    rollup = dict(EMS_IR)
    for slot, serial in ((0, "CE2401G043"), (1, "CE2401G044")):
        rollup.update(zip(range(2066 + 5 * slot, 2071 + 5 * slot), serial_registers(serial), strict=True))
    inverter = _device((range(0, 60), range(2040, 2076)), (range(2040, 2100),), EMS_HR, rollup)
    inverter.hr_block(13, serial_registers("EMS2401042"))
    return {
        INVERTER: inverter,
        0x01: _page(EMS_METER_1, range(60, 90)),
        0x03: _page(EMS_METER_3, range(60, 90)),
    }


def gateway_two_aios() -> dict[int, Device]:
    """Gateway GW2401G051 (GAAA0014) with two All-in-Ones on a July morning, charging from PV.

    Live values (capture): grid +676 W (export), PV 1997 W, load 1109 W, All-in-Ones -154 W
    (charging), SOCs 94 / 96 %; today import 28.0, PV 3.1, export 0.9, load 7.7, battery charge
    19.1 / discharge 2.0 kWh; lifetime import 12710.8, PV 5087.0, load 12006.4 kWh; All-in-One
    1 charge today 9.8 kWh, total 7871.8 kWh; work mode on grid, state static; HR110 reserve 4,
    HR116 target 100, charge slot 1 00:00-05:00.
    """
    rollup = dict(GATEWAY_IR)
    rollup.update(zip(range(1627, 1632), serial_registers("CH2401G052"), strict=True))
    rollup.update(zip(range(1841, 1846), serial_registers("CH2401G052"), strict=True))
    rollup.update(zip(range(1846, 1851), serial_registers("CH2401G053"), strict=True))
    inverter = _device((range(0, 180),), (range(0, 60), range(180, 240), range(1600, 1860)), GATEWAY_HR, rollup)
    inverter.hr_block(13, serial_registers("GW2401G051"))
    return {
        INVERTER: inverter,
        0x01: _page(GATEWAY_METER_1, range(60, 90)),
        0x02: _page(GATEWAY_METER_2, range(60, 90)),
    }


def simulated(family: str, *, batteries: int | None = None, meters: int | None = None) -> dict[int, Device]:
    """Every bank a simulated plant of ``family`` answers, at noon in June: one fixture per family.

    The simulator's register values are protocol-true but invented; tests on it check names,
    definitions and plausibility, while the capture-based factories above pin exact values.
    """
    from datetime import UTC, datetime

    from givbridge.clock import ScaledClock
    from givbridge.sim import SimulatedPlant

    clock = ScaledClock(start=datetime(2026, 6, 20, 11, 0, tzinfo=UTC))
    sim = SimulatedPlant.create(family, batteries=batteries, meters=meters, clock=clock, seed=5, start_soc=64)
    profile = sim.profile
    devices: dict[int, Device] = {INVERTER: Device()}
    for kind, banks in (("HR", profile.holding_served), ("IR", profile.input_served)):
        for bank in banks:
            for base in range(bank.start, bank.stop, 60):
                values = sim.read(INVERTER, kind, base, min(60, bank.stop - base))
                assert isinstance(values, list)
                block = devices[INVERTER].hr_block if kind == "HR" else devices[INVERTER].ir_block
                block(base, values)
    for address in range(0x01, 0xA1):
        if address == INVERTER:
            continue
        for base in (60, 120):
            page = sim.read(address, "IR", base, 60)
            if isinstance(page, list) and any(page):  # blank pages are what the library drops
                devices.setdefault(address, Device()).ir_block(base, page)
    return devices
