"""dcgm-exporter field names (both generations) -> our metric names and units.

dcgm-exporter names each Prometheus family after the DCGM field it exports. DCGM 4.x renamed many
fields with their unit (``DCGM_FI_DEV_GPU_TEMP`` -> ``DCGM_FI_DEV_GPU_TEMP_CELSIUS``,
``DCGM_FI_DEV_POWER_USAGE`` -> ``DCGM_FI_DEV_BOARD_POWER_WATTS``, ``DCGM_FI_DEV_GPU_UTIL`` (percent)
-> ``DCGM_FI_DEV_GPU_UTIL_RATIO``, ``DCGM_FI_DEV_FB_USED`` (MiB) -> ``DCGM_FI_DEV_FB_USED_BYTES``,
``DCGM_FI_DEV_SM_CLOCK`` (MHz) -> ``DCGM_FI_DEV_SM_CLOCK_HERTZ`` ...). Both are keyed here, each with
the factor that brings it to our unit (ratio 0-1, MHz, W, J, bytes, bytes/s). When one scrape carries
both names for the same metric, the newer (base-unit) one wins.
"""

from __future__ import annotations

from dataclasses import dataclass

PCT = 0.01
MIB = float(1 << 20)
# DCGM "blank" sentinels (INT64 >= 0x7ffffffffffffff0, FP64 >= 2**47) mean "no value"
BLANK_AT = float(2**47)


@dataclass(frozen=True, slots=True)
class Dcgm:
    metric: str
    scale: float = 1.0
    counter: bool = False
    legacy: bool = False  # the pre-4.x name: loses against the new name in the same scrape


def _pair(
    old: str, new: str, metric: str, old_scale: float = 1.0, new_scale: float = 1.0, counter: bool = False
) -> dict[str, Dcgm]:
    return {old: Dcgm(metric, old_scale, counter, True), new: Dcgm(metric, new_scale, counter)}


FIELDS: dict[str, Dcgm] = {
    **_pair("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_UTIL_RATIO", "gpu_util", PCT),
    **_pair("DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_MEMORY_UTIL_RATIO", "mem_bw_util", PCT),
    **_pair("DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_SM_CLOCK_HERTZ", "sm_clock_mhz", 1.0, 1e-6),
    **_pair("DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_MEMORY_CLOCK_HERTZ", "mem_clock_mhz", 1.0, 1e-6),
    **_pair("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_GPU_TEMP_CELSIUS", "temp_c"),
    **_pair("DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_MEMORY_TEMP_CELSIUS", "mem_temp_c"),
    **_pair("DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_BOARD_POWER_WATTS", "power_w"),
    **_pair(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_GPU_ENERGY_JOULES_TOTAL",
        "energy_j",
        1e-3,
        1.0,
        counter=True,
    ),
    **_pair("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_USED_BYTES", "mem_used_bytes", MIB),
    **_pair("DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_FREE_BYTES", "mem_free_bytes", MIB),
    **_pair("DCGM_FI_DEV_FB_RESERVED", "DCGM_FI_DEV_FB_RESERVED_BYTES", "mem_reserved_bytes", MIB),
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": Dcgm("ecc_sbe", counter=True),
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": Dcgm("ecc_dbe", counter=True),
    **_pair(
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_ROW_REMAP_CORRECTABLE_TOTAL",
        "row_remap_correctable",
        counter=True,
    ),
    **_pair(
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_ROW_REMAP_UNCORRECTABLE_TOTAL",
        "row_remap_uncorrectable",
        counter=True,
    ),
    **_pair("DCGM_FI_DEV_ROW_REMAP_FAILURE", "DCGM_FI_DEV_ROW_REMAP_FAILED", "row_remap_failure"),
    "DCGM_FI_DEV_ROW_REMAP_PENDING": Dcgm("row_remap_pending"),
    **_pair("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "DCGM_FI_DEV_PCIE_REPLAY_TOTAL", "pcie_replay", counter=True),
    "DCGM_FI_PROF_PCIE_TX_BYTES": Dcgm("pcie_tx_bytes_per_s"),
    "DCGM_FI_PROF_PCIE_RX_BYTES": Dcgm("pcie_rx_bytes_per_s"),
    # MB/s (decimal) in both legacy names; the 4.x byte field is bytes/s
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": Dcgm("nvlink_bytes_per_s", 1e6, legacy=True),
    "DCGM_FI_DEV_NVLINK_THROUGHPUT_TOTAL": Dcgm("nvlink_bytes_per_s", 1e6, legacy=True),
    "DCGM_FI_DEV_NVLINK_THROUGHPUT_BYTES_PER_SECOND": Dcgm("nvlink_bytes_per_s"),
    "DCGM_FI_PROF_NVLINK_TX_BYTES": Dcgm("nvlink_tx_bytes_per_s"),
    "DCGM_FI_PROF_NVLINK_RX_BYTES": Dcgm("nvlink_rx_bytes_per_s"),
    "DCGM_FI_DEV_NVLINK_CRC_ERROR_TOTAL": Dcgm("nvlink_crc_errors", counter=True),
    # legacy flit + data CRC totals are summed into nvlink_crc_errors
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": Dcgm("_crc_flit", counter=True, legacy=True),
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL": Dcgm("_crc_data", counter=True, legacy=True),
    **_pair("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "clock_event_reasons"),
    **_pair("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO", "gr_engine_active"),
    **_pair("DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_SM_UTIL_RATIO", "sm_active"),
    **_pair("DCGM_FI_PROF_SM_OCCUPANCY", "DCGM_FI_PROF_SM_OCCUPANCY_RATIO", "sm_occupancy"),
    **_pair("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_PROF_TENSOR_UTIL_RATIO", "tensor_active"),
    **_pair("DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_PROF_DRAM_UTIL_RATIO", "dram_active"),
}
CRC_PARTS = ("_crc_flit", "_crc_data")
# "value of the last XID error": a gauge of the last code, turned into events by the source
XID_LAST = ("DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_XID_ERROR")
# exporter-side cumulative XID counter, one series per code (label ``xid``)
XID_TOTAL = "DCGM_EXP_XID_ERRORS_TOTAL"
COUNTERS: frozenset[str] = frozenset(
    {f.metric for f in FIELDS.values() if f.counter and f.metric not in CRC_PARTS} | {"nvlink_crc_errors"}
)
