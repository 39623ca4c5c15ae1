"""The engine shape (docs/engines.md): complete records, the shell contract, shared code
that names no engine, and one installable package."""

import dataclasses
import re
import subprocess
import sys
import zipfile
from dataclasses import fields
from pathlib import Path

import pytest
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from celine import registry
from celine.engines import Accelerator, CycleEstimate, Ref
from celine.spec.fields import BufferSpec, RegisterMap

ROOT = Path(__file__).resolve().parents[1]
RECORDS = registry.ENGINES

# The code every engine goes through: none of it may name an engine.
SHARED = ["celine/rtl/shell", "celine/golden/shell.py", "celine/firmware", "celine/gen",
          "celine/boards", "celine/spec", "celine/sim/runner.py", "celine/sim/emit.py",
          "celine/sim/tb/shell_tb.py", "celine/rtl/common", "celine/formal"]


def shared_files():
    for entry in SHARED:
        path = ROOT / entry
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_record_is_complete(record):
    assert isinstance(record, Accelerator)
    params = record.params()
    assert type(params).from_dict(params.to_dict()) == params
    assert isinstance(params.derived(), dict)
    registers = record.registers(params)
    assert isinstance(registers, RegisterMap) and len(registers) >= 1
    buffers = record.buffers(params, **record.options)
    assert buffers and all(isinstance(b, BufferSpec) for b in buffers)
    assert len({b.name for b in buffers}) == len(buffers)
    for ref in (record.core, record.adapter, record.golden, record.host, record.cycles,
                record.bench, record.sample_calls, record.random_call):
        assert isinstance(ref, Ref) and callable(ref.load())
    if record.proofs is not None:
        from celine.formal import Proof
        assert isinstance(record.proofs, Ref)
        proofs = record.proofs.load()
        assert proofs and all(isinstance(proof, Proof) for proof in proofs)
    estimate = record.cycles.load()(params, **record.workload)
    assert isinstance(estimate, CycleEstimate) and estimate.cycles > 0
    assert 0 < estimate.utilization <= 1
    known = {f.name for f in fields(record.params) if f.init}
    assert record.space and set(record.space) <= known
    for name, values in record.space.items():
        for value in values:
            try:
                record.params(**{name: value})
            except ValueError as error:      # a value that needs other parameters changed
                assert name in str(error)
    # The largest-configuration ladder: valid configurations, none with fewer useful MACs a
    # cycle than the one before (the search halves it, so it must grow; ViTCoD's top two
    # take the same: past d MACs the SpMM uses d of them).
    rates = []
    for rung in record.scale:
        over = dataclasses.replace(params, **rung)
        rung_estimate = record.cycles.load()(over, **record.workload)
        rates.append(rung_estimate.useful_macs / rung_estimate.cycles)
    assert rates == sorted(rates) and rates[0] < rates[-1], (record.name, rates)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_adapter_has_the_contract_signature(record):
    from celine.rtl.shell.contract import check_engine
    params = record.params()
    adapter = record.adapter.load()(params, **record.options)
    check_engine(adapter, record.buffers(params, **record.options), record.registers(params))


def test_the_shell_names_a_missing_member():
    from celine.rtl.shell.contract import check_engine, engine_signature
    from celine.spec.fields import Register
    buffers = [BufferSpec("x", 8, 4, True), BufferSpec("y", 8, 4, False)]
    registers = RegisterMap([Register("count")])

    class Incomplete(wiring.Component):
        start: In(1)
        busy: Out(1)

        def elaborate(self, platform):
            raise NotImplementedError

    with pytest.raises(TypeError, match=r"^engine must have a member 'registers' of "
                                        r"In\(unsigned\(32\)\) \(the shell contract\), "
                                        r"not none$"):
        check_engine(Incomplete(), buffers, registers)

    members = dict(engine_signature(buffers, registers).members)
    members["mem"] = Out(wiring.Signature({"x": Out(wiring.Signature({"addr": Out(range(4)),
                                                                          "data": In(8)}))}))
    with pytest.raises(TypeError, match=r"^engine must have a member 'mem\.y\.addr' of "
                                         r"Out\(unsigned\(2\)\)"):
        check_engine(_component(members), buffers, registers)
    members["mem"] = Out(wiring.Signature({
        "x": Out(wiring.Signature({"addr": Out(range(4)), "data": In(16)})),
        "y": Out(wiring.Signature({"addr": Out(range(4)), "data": Out(8), "write": Out(1)}))}))
    with pytest.raises(TypeError, match=r"^engine member 'mem\.x\.data' must be "
                                         r"In\(unsigned\(8\)\), not In\(unsigned\(16\)\)$"):
        check_engine(_component(members), buffers, registers)


def _component(members):
    class Partial(wiring.Component):
        def __init__(self):
            super().__init__(wiring.Signature(members))

        def elaborate(self, platform):
            raise NotImplementedError
    return Partial()


def test_shared_code_names_no_engine():
    names = [record.name for record in RECORDS]
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b", re.IGNORECASE)
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in shared_files()
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_registry_rejects_an_unknown_engine():
    with pytest.raises(ValueError, match=r"^accelerator must be one of "
                                         + ", ".join(r.name for r in RECORDS) + r", not 'x'$"):
        registry.get("x")


def test_option_names_are_checked():
    record = RECORDS[0]
    with pytest.raises(ValueError, match=rf"^option must be one of .* for the {record.name} "
                                         r"engine, not 'colour'$"):
        record.resolve_options({"colour": 1})


def test_the_wheel_holds_one_top_level_package(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                             "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"celine", "celine-0.1.0.dist-info"}
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "celine = celine.gen.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_register_tables_check_themselves():
    from celine.spec.fields import Field, Register
    requant = Register("requant", fields=(Field("enable", 0, 1), Field("multiplier", 1, 16)))
    assert requant.pack(enable=1, multiplier=300) == 601
    assert requant.unpack(601) == {"enable": 1, "multiplier": 300}
    with pytest.raises(ValueError, match=r"^requant\.multiplier must be an integer between 0 "
                                         r"and 65535, not 65536$"):
        requant.pack(multiplier=1 << 16)
    with pytest.raises(ValueError, match=r"^tokens must be an integer between 0 and 255, "
                                         r"not -1$"):
        Register("tokens", width=8).pack(tokens=-1)
    with pytest.raises(ValueError, match=r"^fields of register 'wide' must fit in 32 bits, "
                                         r"not 33$"):
        Register("wide", fields=(Field("a", 0, 16), Field("b", 16, 17)))
    with pytest.raises(ValueError,
                       match=r"^register names must be distinct, not \['a', 'a'\]$"):
        RegisterMap([Register("a"), Register("a")])
