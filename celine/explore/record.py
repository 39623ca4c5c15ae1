"""One measured configuration: the row of the cost data set and the unit of the cache.

A record is a plain JSON-ready dict with the keys of FIELDS (every key present; None where
a figure was not measured or the build failed). Its `key` is the content hash of what
determines the measurement (`content_key`): the generated Verilog, the tool versions, the
device and package, the seed and the flow's options. Two records with the same key are the
same measurement.
"""

import hashlib
import json

__all__ = ["SCHEMA_VERSION", "FIELDS", "STATUS", "content_key", "new_record", "check_record"]

SCHEMA_VERSION = 1

STATUS = ("ok", "failed")

# name -> (type(s), meaning). Figures are None when not measured.
FIELDS = {
    "key": (str, "sha256 hex of what determines the measurement (content_key)"),
    "engine": (str, "registry name of the engine (celine list)"),
    "params": (dict, "resolved generator parameters (Params.to_dict())"),
    "board": (str, "board name (celine.boards), e.g. 'ulx3s-85f'"),
    "device": (str, "FPGA device, e.g. 'LFE5U-85F'"),
    "seed": (int, "nextpnr placement seed"),
    "tools": (dict, "tool versions, {'yosys': ..., 'nextpnr': ...}"),
    "status": (str, "'ok' or 'failed'"),
    "error": ((str, type(None)), "the failing tool's own error line, None when ok"),
    "workload": ((dict, type(None)), "the cycle model's workload, {name: value}"),
    "cycles": ((int, type(None)), "cycle-model cycles of the workload"),
    "useful_macs": ((int, type(None)), "useful MACs of the workload"),
    "mac_units": ((int, float, type(None)), "ideal MACs per cycle of the configuration"),
    "sim_cycles": ((int, type(None)), "RTL-simulation cycles of the workload, if checked"),
    "cycle_error": ((float, type(None)), "|model - sim| / sim, if checked"),
    "lut4": ((int, type(None)), "LUT4 after place and route (TRELLIS_COMB)"),
    "ff": ((int, type(None)), "flip-flops (TRELLIS_FF)"),
    "mult18x18d": ((int, type(None)), "MULT18X18D blocks"),
    "dp16kd": ((int, type(None)), "DP16KD block RAMs"),
    "clock_mhz": ((float, type(None)), "the clock constraint given to nextpnr"),
    "fmax_mhz": ((float, type(None)), "achieved Fmax (nextpnr's report)"),
    "fits": ((bool, type(None)), "every resource within the device"),
    "meets_timing": ((bool, type(None)), "fmax_mhz >= clock_mhz"),
    "throughput": ((float, type(None)), "useful MACs per second at fmax_mhz: "
                                        "useful_macs / cycles * fmax_mhz * 1e6"),
    "seconds": (dict, "seconds per step, {'synth': s, 'pnr': s, ...}"),
    "created": (str, "UTC time of the measurement, ISO 8601"),
}


def content_key(*, verilog, tools, device, package, seed, flow):
    """The sha256 hex of what determines a measurement: the Verilog text, the tool
    versions (dict), the device and package, the seed and the flow's options (dict)."""
    text = json.dumps({"verilog": hashlib.sha256(verilog.encode()).hexdigest(),
                       "tools": tools, "device": device, "package": package,
                       "seed": seed, "flow": flow}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def new_record(**values):
    """A record with every field: `values` over None (dicts default to {})."""
    record = {name: ({} if kind is dict else None) for name, (kind, _) in FIELDS.items()}
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"record field must be one of {', '.join(FIELDS)}, not {unknown[0]!r}")
    record.update(values)
    return record


def check_record(record):
    """`record` if it has exactly FIELDS with their types; ValueError/TypeError otherwise."""
    if not isinstance(record, dict):
        raise TypeError(f"record must be a dict, not {record!r}")
    missing = [name for name in FIELDS if name not in record]
    extra = sorted(set(record) - set(FIELDS))
    if missing or extra:
        raise ValueError(f"record fields differ: missing {missing}, unknown {extra}")
    for name, (kind, _) in FIELDS.items():
        value = record[name]
        if kind is not bool and isinstance(value, bool) and bool not in (
                kind if isinstance(kind, tuple) else (kind,)):
            raise TypeError(f"record field {name} must be {kind}, not {value!r}")
        if not isinstance(value, kind):
            raise TypeError(f"record field {name} must be {kind}, not {value!r}")
    if record["status"] not in STATUS:
        raise ValueError(f"record field status must be one of {STATUS}, not {record['status']!r}")
    return record
