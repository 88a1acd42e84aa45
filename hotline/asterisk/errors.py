"""One exception tree for everything that manages Asterisk; messages say what to do."""

from __future__ import annotations


class AsteriskError(Exception):
    """Asterisk could not be prepared, started, stopped or reached."""


class NotRootError(AsteriskError):
    """The operation needs root (chroot, mount, binding as another user)."""


class MissingToolError(AsteriskError):
    """A host program we need is not installed."""


class ArchiveUnreachableError(AsteriskError):
    """The Debian archive used to build the Asterisk root could not be reached."""


class RootBuildError(AsteriskError):
    """mmdebstrap failed for another reason."""


class PortInUseError(AsteriskError):
    """A port Asterisk must bind is already taken."""


class StartupError(AsteriskError):
    """Asterisk did not start or did not finish booting in time."""


class AmiUnreachableError(AsteriskError):
    """The Asterisk Manager Interface did not accept a connection."""
