"""Speak the Windows service control manager's protocol with ctypes, so ``possync run`` is a real service.

Invariants: ``run_as_service(main)`` blocks in ``StartServiceCtrlDispatcherW``; the SCM calls
ServiceMain, which reports START_PENDING, then RUNNING, and runs ``main(stop_event)``. STOP and
SHUTDOWN set the event and report STOP_PENDING; when ``main`` returns, STOPPED is reported with its
exit code. Only Windows can run this module; its constants and the order of reports are unit-tested
through ``status_sequence``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

SERVICE_WIN32_OWN_PROCESS = 0x10
SERVICE_STOPPED = 1
SERVICE_START_PENDING = 2
SERVICE_STOP_PENDING = 3
SERVICE_RUNNING = 4
SERVICE_ACCEPT_STOP = 0x1
SERVICE_ACCEPT_SHUTDOWN = 0x4
SERVICE_CONTROL_STOP = 1
SERVICE_CONTROL_INTERROGATE = 4
SERVICE_CONTROL_SHUTDOWN = 5
ERROR_SERVICE_SPECIFIC_ERROR = 1066
NO_ERROR = 0
STOP_WAIT_HINT_MS = 30_000

AgentMain = Callable[[threading.Event], int]


def status_sequence(exit_code: int) -> list[tuple[int, int, int]]:
    """Return the (state, accepted controls, win32 exit code) reports of one clean run that ends with ``exit_code``."""
    accepted = SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN
    final = (SERVICE_STOPPED, 0, NO_ERROR if exit_code == 0 else ERROR_SERVICE_SPECIFIC_ERROR)
    return [
        (SERVICE_START_PENDING, 0, NO_ERROR),
        (SERVICE_RUNNING, accepted, NO_ERROR),
        (SERVICE_STOP_PENDING, 0, NO_ERROR),
        final,
    ]


if sys.platform == "win32":  # pragma: no cover - runs on Windows only
    import ctypes
    from ctypes import wintypes

    class _Status(ctypes.Structure):
        _fields_ = [
            ("dwServiceType", wintypes.DWORD),
            ("dwCurrentState", wintypes.DWORD),
            ("dwControlsAccepted", wintypes.DWORD),
            ("dwWin32ExitCode", wintypes.DWORD),
            ("dwServiceSpecificExitCode", wintypes.DWORD),
            ("dwCheckPoint", wintypes.DWORD),
            ("dwWaitHint", wintypes.DWORD),
        ]

    _HANDLER = ctypes.WINFUNCTYPE(wintypes.DWORD, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID, wintypes.LPVOID)
    _MAIN = ctypes.WINFUNCTYPE(None, wintypes.DWORD, ctypes.POINTER(wintypes.LPWSTR))

    class _TableEntry(ctypes.Structure):
        _fields_ = [("lpServiceName", wintypes.LPWSTR), ("lpServiceProc", _MAIN)]

    def run_as_service(name: str, main: AgentMain) -> int:
        """Hand the process to the SCM; return the agent's exit code once the service has stopped."""
        advapi = ctypes.WinDLL("advapi32", use_last_error=True)
        stop = threading.Event()
        result = {"code": 1}
        state = {"handle": None, "checkpoint": 0}

        def report(current: int, accepted: int, win32_exit: int, specific: int = 0) -> None:
            state["checkpoint"] = 0 if current in (SERVICE_RUNNING, SERVICE_STOPPED) else state["checkpoint"] + 1
            status = _Status(
                SERVICE_WIN32_OWN_PROCESS,
                current,
                accepted,
                win32_exit,
                specific,
                state["checkpoint"],
                STOP_WAIT_HINT_MS,
            )
            advapi.SetServiceStatus(state["handle"], ctypes.byref(status))

        def handler(control: int, _event: int, _data: object, _context: object) -> int:
            if control in (SERVICE_CONTROL_STOP, SERVICE_CONTROL_SHUTDOWN):
                report(SERVICE_STOP_PENDING, 0, NO_ERROR)
                stop.set()
            return NO_ERROR

        handler_ref = _HANDLER(handler)

        def service_main(_argc: int, _argv: object) -> None:
            advapi.RegisterServiceCtrlHandlerExW.restype = wintypes.HANDLE
            state["handle"] = advapi.RegisterServiceCtrlHandlerExW(name, handler_ref, None)
            sequence = status_sequence(0)
            report(*sequence[0])
            report(*sequence[1])
            try:
                result["code"] = main(stop)
            finally:
                final = status_sequence(result["code"])[-1]
                report(final[0], final[1], final[2], result["code"])

        main_ref = _MAIN(service_main)
        table = (_TableEntry * 2)(_TableEntry(name, main_ref), _TableEntry(None, _MAIN()))
        if not advapi.StartServiceCtrlDispatcherW(table):
            raise OSError(
                ctypes.get_last_error(), "not started by the service control manager (use 'sc.exe start possync')"
            )
        return result["code"]

else:

    def run_as_service(name: str, main: AgentMain) -> int:
        """Only the Windows service control manager can start a Windows service."""
        raise OSError(f"--windows-service works only on Windows (service {name})")
