"""SDP edits the Python peer makes before any description is set or sent.

Privacy: the RTP header extension ``urn:ietf:params:rtp-hdrext:ssrc-audio-level`` (RFC 6464)
carries each packet's audio level in clear text, outside SRTP's encryption, so a TURN relay or
anyone on the path could see when someone speaks. Removing its ``a=extmap`` line from both the
local and the remote description means it is never negotiated and never sent (audio still flows
without it, in both aiortc and Chromium: tests/browser/test_call.py checks every link's SDP).
"""

from __future__ import annotations

__all__ = ["AUDIO_LEVEL_URI", "ice_ufrag", "strip_audio_level"]

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


def strip_audio_level(sdp: str) -> str:
    """Return `sdp` without the ``a=extmap`` lines that negotiate the audio-level extension.

    Line endings are kept as they were (SDP uses CRLF; tolerate bare LF).
    """
    lines = sdp.splitlines(keepends=True)
    return "".join(line for line in lines if not _is_audio_level_extmap(line))


def media_sections(sdp: str | None) -> list[str]:
    """The media sections of `sdp`, in order (their ``a=mid`` values). An answer has exactly
    those of the offer it answers, which tells a late answer to an earlier offer with the same
    ICE credentials (a renegotiation) from the answer to the one out now."""
    return [line[len("a=mid:"):].strip() for line in (sdp or "").splitlines()
            if line.startswith("a=mid:")]


def ice_ufrag(sdp: str | None) -> str | None:
    """The ICE username fragment of `sdp` (its first ``a=ice-ufrag``), or None. Each offer has
    its own (a new connection or an ICE restart makes a new one), so it names an offer."""
    for line in (sdp or "").splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line[len("a=ice-ufrag:"):].strip() or None
    return None


def _is_audio_level_extmap(line: str) -> bool:
    # a=extmap:<id>[/<direction>] <uri> [<attributes>]   (RFC 8285 section 5)
    if not line.startswith("a=extmap:"):
        return False
    fields = line.split()
    return len(fields) >= 2 and fields[1] == AUDIO_LEVEL_URI
