"""Exceptions of the host runtime.

    CelineError            also: a closed device, a serial port that cannot be opened
    ├── LinkError          the link failed: a line that never went quiet, a closed
    │   │                  connection, a port error
    │   ├── LinkTimeout    no reply, or only part of one, within the timeout
    │   └── ReplyCRCError  a reply failed its CRC
    ├── ProtocolError      a well-formed reply that does not fit the request
    ├── RunTimeout         a run still busy after its timeout
    ├── EngineError        a run finished with engine error flags set
    └── DeviceError        the device answered with an error status
        ├── BadCRC, UnknownCommand, BadLength, BadAddress, FrameTimeout, Busy, BadRegister
    SettingError(ValueError)  a setting rejected on the host before anything was sent
"""

from .protocol import Status

__all__ = ["CelineError", "LinkError", "LinkTimeout", "ReplyCRCError", "ProtocolError",
           "RunTimeout", "EngineError", "DeviceError",
           "BadCRC", "UnknownCommand", "BadLength", "BadAddress", "FrameTimeout", "Busy",
           "BadRegister", "SettingError", "device_error"]


class CelineError(Exception):
    """Base of every error the host runtime raises about the link or the device."""


class LinkError(CelineError):
    """The link to the device failed; every wait of the host runtime ends in one of these
    (or in RunTimeout) when its deadline passes."""


class LinkTimeout(LinkError):
    """No complete reply arrived within the timeout."""


class ReplyCRCError(LinkError):
    """A reply arrived but failed its CRC."""


class ProtocolError(CelineError):
    """A reply that does not match its request (sequence number, payload size)."""


class RunTimeout(CelineError):
    """The device still reported busy when the run's timeout passed."""


class EngineError(CelineError):
    """A run ended with engine error flags set: `flags`, the engine's Errors (an IntFlag of
    its spec; docs/protocol.md lists each engine's bits)."""

    def __init__(self, flags, message):
        self.flags = flags
        super().__init__(message)


class DeviceError(CelineError):
    """The device replied with an error status to a request."""

    status = None

    def __init__(self, status, seq, command, message=None):
        self.status, self.seq, self.command = status, seq, command
        name = getattr(command, "name", command)
        status_name = getattr(status, "name", status)
        super().__init__(message or f"device replied {status_name} to {name} (seq {seq})")


class BadCRC(DeviceError):
    status = Status.BAD_CRC


class UnknownCommand(DeviceError):
    status = Status.UNKNOWN_COMMAND


class BadLength(DeviceError):
    status = Status.BAD_LENGTH


class BadAddress(DeviceError):
    status = Status.BAD_ADDRESS


class FrameTimeout(DeviceError):
    status = Status.TIMEOUT


class Busy(DeviceError):
    status = Status.BUSY


class BadRegister(DeviceError):
    status = Status.BAD_REGISTER


_BY_STATUS = {cls.status: cls for cls in (BadCRC, UnknownCommand, BadLength, BadAddress,
                                          FrameTimeout, Busy, BadRegister)}


def device_error(status, seq, command):
    """The DeviceError subclass instance for an error *status* (DeviceError if unknown)."""
    return _BY_STATUS.get(status, DeviceError)(status, seq, command)


class SettingError(CelineError, ValueError):
    """A setting the device cannot take, found before anything was sent.

    The message reads "<name> must be <rule>, not <value!r>".
    """
