"""ctypes declarations of librstar's C ABI (include/rstar.h) and the library lookup.

ctypes releases the GIL for the duration of every foreign call, so other Python threads run
while the library works; callbacks re-acquire it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

ABI_VERSION = 4

status = c_int


class SolverProgress(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("done", c_uint64),
        ("total", c_uint64),
        ("solved", c_uint64),
        ("rollouts", c_uint64),
        ("tokens", c_uint64),
        ("elapsed_secs", c_double),
    ]


class TrainProgress(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("epoch", c_uint32),
        ("step", c_uint64),
        ("total_steps", c_uint64),
        ("loss", c_double),
        ("grad_norm", c_double),
        ("lr", c_double),
        ("tokens", c_uint64),
        ("tokens_per_sec", c_double),
        ("elapsed_secs", c_double),
        ("eta_secs", c_double),
    ]


class EvolveParams(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("policy", c_char_p),
        ("data", c_char_p),
        ("eval_data", c_char_p),
        ("replay_data", c_char_p),
        ("workdir", c_char_p),
        ("rounds", c_uint32),
        ("config", c_char_p),
        ("precision", c_uint32),
        ("threads", c_uint32),
    ]


class EvolveEvent(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("kind", c_uint32),
        ("round", c_uint32),
        ("stage", c_uint32),
        ("skipped", c_uint32),
        ("done", c_uint64),
        ("total", c_uint64),
        ("train", TrainProgress),
        ("round_json", c_char_p),
    ]


EVOLVE_CALLBACK = CFUNCTYPE(c_bool, POINTER(EvolveEvent), c_void_p)
TEXT_CALLBACK = CFUNCTYPE(c_bool, c_void_p, c_size_t, c_void_p)
SOLVER_CALLBACK = CFUNCTYPE(c_bool, POINTER(SolverProgress), c_void_p)
TRAIN_CALLBACK = CFUNCTYPE(c_bool, POINTER(TrainProgress), c_void_p)
CODE_RUNNER = CFUNCTYPE(None, c_void_p, c_size_t, c_double, c_void_p, c_void_p)


class GenerateParams(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("max_new_tokens", c_uint32),
        ("temperature", c_float),
        ("top_k", c_uint32),
        ("top_p", c_float),
        ("seed", c_uint64),
        ("stop", POINTER(c_char_p)),
        ("n_stop", c_size_t),
        ("ignore_eos", c_bool),
    ]


class SolverParams(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("policy", c_char_p),
        ("ppm", c_char_p),
        ("config", c_char_p),
        ("device", c_char_p),
        ("precision", c_uint32),
        ("threads", c_uint32),
        ("executor_workers", c_uint32),
        ("step_timeout_s", c_double),
        ("step_memory_bytes", c_uint64),
        ("mode", c_uint32),
        ("weak_sandbox", c_uint32),
        ("code_runner", CODE_RUNNER),
        ("code_runner_user_data", c_void_p),
        ("kv_dtype", c_uint32),
        ("quant_load", c_uint32),
    ]


class ExecParams(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("timeout_s", c_double),
        ("memory_bytes", c_uint64),
        ("weak_sandbox", c_uint32),
        ("python", c_char_p),
    ]


def _candidates() -> list[str]:
    out = []
    env = os.environ.get("RSTAR_LIB")
    if env:
        out.append(env)
    here = Path(__file__).resolve().parent
    out += [str(here / n) for n in ("librstar.so", "librstar.dylib")]
    found = ctypes.util.find_library("rstar")
    if found:
        out.append(found)
    return out


def _load() -> ctypes.CDLL:
    tried = []
    for c in _candidates():
        if os.path.sep in c and not os.path.exists(c):
            tried.append(f"{c} (missing)")
            continue
        try:
            return ctypes.CDLL(c)
        except OSError as e:
            tried.append(f"{c} ({e})")
    raise ImportError(
        "librstar not found: set RSTAR_LIB to a built librstar.so, or install the package with "
        "`pip install ./bindings/python` (tried: " + "; ".join(tried or ["nothing"]) + ")"
    )


lib = _load()


def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


P = c_void_p  # opaque handles
OUT_STR = POINTER(c_void_p)  # char ** (kept as a raw pointer so it can be freed)

version = _fn("rstar_version", c_char_p)
abi_version = _fn("rstar_abi_version", c_uint32)
last_error = _fn("rstar_last_error_message", c_char_p)
string_free = _fn("rstar_string_free", status, c_void_p)

model_load = _fn("rstar_model_load", status, c_char_p, POINTER(P))
model_free = _fn("rstar_model_free", status, P)
model_vocab_size = _fn("rstar_model_vocab_size", status, P, POINTER(c_uint32))
generate_default_params = _fn("rstar_generate_default_params", None, POINTER(GenerateParams))
model_generate_text = _fn(
    "rstar_model_generate_text",
    status,
    P,
    c_char_p,
    c_bool,
    POINTER(GenerateParams),
    TEXT_CALLBACK,
    c_void_p,
    OUT_STR,
)

solver_default_params = _fn("rstar_solver_default_params", None, POINTER(SolverParams))
solver_new_with_params = _fn(
    "rstar_solver_new_with_params", status, POINTER(SolverParams), POINTER(P)
)
solver_solve = _fn("rstar_solver_solve", status, P, c_char_p, OUT_STR)
solver_run_problems = _fn("rstar_solver_run_problems", status, P, c_char_p, OUT_STR)
solver_run_dataset = _fn(
    "rstar_solver_run_dataset",
    status,
    P,
    c_char_p,
    c_size_t,
    c_char_p,
    SOLVER_CALLBACK,
    c_void_p,
    OUT_STR,
)
solver_cancel = _fn("rstar_solver_cancel", None, P)
solver_free = _fn("rstar_solver_free", status, P)
code_result_set = _fn("rstar_code_result_set", status, c_void_p, c_bool, c_char_p, c_char_p)

grade = _fn("rstar_grade", status, c_char_p, c_char_p, POINTER(c_bool))
extract_answer = _fn("rstar_extract_answer", status, c_char_p, OUT_STR)
exec_default_params = _fn("rstar_exec_default_params", None, POINTER(ExecParams))
exec_ = _fn("rstar_exec", status, c_char_p, POINTER(ExecParams), OUT_STR)

trainer_new = _fn("rstar_trainer_new", status, c_char_p, c_char_p, POINTER(P))
trainer_load_data = _fn("rstar_trainer_load_data", status, P, c_char_p, POINTER(c_size_t))
trainer_step = _fn("rstar_trainer_step", status, P, c_uint32, TRAIN_CALLBACK, c_void_p)
trainer_epoch = _fn("rstar_trainer_epoch", status, P, TRAIN_CALLBACK, c_void_p)
trainer_finished = _fn("rstar_trainer_finished", status, P, POINTER(c_bool))
trainer_save = _fn("rstar_trainer_save", status, P, c_char_p)
trainer_cancel = _fn("rstar_trainer_cancel", None, P)
trainer_free = _fn("rstar_trainer_free", status, P)

evolve_default_params = _fn("rstar_evolve_default_params", None, POINTER(EvolveParams))
evolve_run = _fn(
    "rstar_evolve_run", status, POINTER(EvolveParams), EVOLVE_CALLBACK, c_void_p, OUT_STR
)

if abi_version() < ABI_VERSION:
    raise ImportError(
        f"librstar ABI {abi_version()} is older than the {ABI_VERSION} this package needs"
    )
