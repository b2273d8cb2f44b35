"""
relay.download_recording() and relay.stream_recording() (relaycall/_download.py).

End to end on the emulator (record, wait, download a valid WAV of the recorded length),
then against aiohttp servers on 127.0.0.1 that misbehave on purpose: a 503 then the
audio, too many bytes with and without Content-Length, a connection dropped mid-body,
and URLs on another origin, which must never see the Authorization header (asserted
on the raw request headers each server received).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import relaycall
from relaycall.testing import Emulator
from tests.conftest import PROJECT, TOKEN

AUDIO = bytes(range(256)) * 400  # 102,400 bytes
BASIC = "Basic " + base64.b64encode(f"{PROJECT}:{TOKEN}".encode()).decode()

Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AudioServer:
    """An aiohttp server on 127.0.0.1 serving /<name> by a behaviour; keeps raw request heads."""

    def __init__(self) -> None:
        self.routes: dict[str, Behaviour] = {}
        #: (path, raw headers as the client sent them) for every request, in order.
        self.seen: list[tuple[str, list[tuple[bytes, bytes]]]] = []
        app = web.Application()
        app.router.add_get("/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self.base = ""

    async def start(self, host: str = "127.0.0.1") -> AudioServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://{host}:{self._runner.addresses[0][1]}"
        return self

    async def close(self) -> None:
        await self._runner.cleanup()

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def authorizations(self) -> list[str | None]:
        """The Authorization header of every request received, None where there was none."""
        found: list[str | None] = []
        for _, raw in self.seen:
            values = [v.decode() for k, v in raw if k.lower() == b"authorization"]
            found.append(values[0] if values else None)
        return found

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.path, list(request.raw_headers)))
        return await self.routes[request.match_info["name"]](request)


async def serve_audio(request: web.Request) -> web.Response:
    return web.Response(body=AUDIO, content_type="audio/wav")


@pytest.fixture
async def audio() -> AsyncIterator[AudioServer]:
    server = await AudioServer().start()
    yield server
    await server.close()


@pytest.fixture
async def elsewhere() -> AsyncIterator[AudioServer]:
    """A second server: another origin (another port) than the API's."""
    server = await AudioServer().start()
    yield server
    await server.close()


@pytest.fixture
async def relay(audio: AudioServer, sleeps: Any) -> AsyncIterator[relaycall.AsyncRelay]:
    """An AsyncRelay whose API origin is the *audio* server (retry waits skipped)."""
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=audio.base) as r:
        yield r


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- end to end on the emulator -------------------------------------------------------------


async def test_a_recording_on_the_emulator_downloads_as_a_valid_wav(tmp_path: Path) -> None:
    """
    Record on an emulated call for 3 emulated seconds, wait for the result: the
    download is a WAV whose frames last the result's duration, of the result's size, and
    streaming gives the same bytes.
    """
    async with Emulator(time_scale=100) as emu:
        call = await emu.relay.dial(from_="+15551230000", to="+15557650000", url="https://e.x/s")
        assert await call.wait_for("answered", timeout=10) == "answered"
        # No initial timeout (silence would end it as no_input): it ends at max_length.
        rec = await call.record(format="wav", initial_timeout=0, max_length=3)
        emu.advance(3)
        result = await rec.wait(timeout=10)
        assert result.state == "finished"
        assert result.url is not None
        assert result.duration is not None
        target = tmp_path / "voicemail.wav"
        size = await emu.relay.download_recording(result, target)
        assert size == result.size == target.stat().st_size
        with wave.open(str(target)) as wav:
            assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
            assert wav.getnframes() / wav.getframerate() == pytest.approx(result.duration, abs=1e-3)
        assert result.duration == pytest.approx(3, abs=0.25)  # max_length, plus timer slack
        streamed = b"".join([chunk async for chunk in emu.relay.stream_recording(result)])
        assert streamed == target.read_bytes()
        assert leftovers(tmp_path) == ["voicemail.wav"]


# --- the API's origin gets the credentials, nobody else ------------------------------------------


async def test_credentials_go_to_the_api_origin_only(
    relay: relaycall.AsyncRelay, audio: AudioServer, elsewhere: AudioServer, tmp_path: Path
) -> None:
    """
    The API's own origin gets the session's Basic credentials; the same file on another
    port, or under another host name for the same address (localhost), gets none.
    """
    audio.routes["a.wav"] = elsewhere.routes["a.wav"] = serve_audio
    await relay.download_recording(audio.url("a.wav"), tmp_path / "1.wav")
    await relay.download_recording(elsewhere.url("a.wav"), tmp_path / "2.wav")
    await relay.download_recording(
        audio.url("a.wav").replace("127.0.0.1", "localhost"), tmp_path / "3.wav"
    )
    assert audio.authorizations() == [BASIC, None]
    assert elsewhere.authorizations() == [None]
    assert (tmp_path / "2.wav").read_bytes() == AUDIO


async def test_a_redirect_elsewhere_carries_no_credentials(
    relay: relaycall.AsyncRelay, audio: AudioServer, elsewhere: AudioServer, tmp_path: Path
) -> None:
    """A recording on the API's origin redirecting to another one (a storage bucket, say):
    the first request has the credentials, the redirected one none; the audio arrives."""

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(elsewhere.url("b.wav") + "?X-Signature=bucket-secret")

    audio.routes["a.wav"] = moved
    elsewhere.routes["b.wav"] = serve_audio
    assert await relay.download_recording(audio.url("a.wav"), tmp_path / "a.wav") == len(AUDIO)
    assert audio.authorizations() == [BASIC]
    assert elsewhere.authorizations() == [None]


async def test_a_redirect_from_elsewhere_to_the_api_carries_no_credentials(
    relay: relaycall.AsyncRelay, audio: AudioServer, elsewhere: AudioServer, tmp_path: Path
) -> None:
    """A URL on another host redirecting to the API's origin: neither request has the
    credentials (whoever runs that host must not get an authenticated GET of the API)."""

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(audio.url("a.wav"))

    elsewhere.routes["b.wav"] = moved
    audio.routes["a.wav"] = serve_audio
    assert await relay.download_recording(elsewhere.url("b.wav"), tmp_path / "b.wav") == len(AUDIO)
    assert elsewhere.authorizations() == [None]
    assert audio.authorizations() == [None]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/a.wav", "only http"),
        ("file:///etc/passwd", "only http"),
        ("/recordings/a.wav", "only http"),
        ("http://user:pw@127.0.0.1/a.wav", "user:password@"),
        ("http://127.0.0.1:99999/a.wav", "not a URL"),
    ],
)
async def test_urls_that_are_not_http_are_refused(
    relay: relaycall.AsyncRelay, tmp_path: Path, url: str, message: str
) -> None:
    """Only absolute http(s) URLs without credentials of their own are fetched."""
    with pytest.raises(relaycall.UsageError, match=message):
        await relay.download_recording(url, tmp_path / "a.wav")
    with pytest.raises(relaycall.UsageError, match=message):
        relay.stream_recording(url)


async def test_a_redirect_to_another_scheme_is_refused(
    relay: relaycall.AsyncRelay, audio: AudioServer, tmp_path: Path
) -> None:
    """A redirect to a file: (or any non-http) URL is not followed: UsageError, no file."""

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("file:///etc/passwd")

    audio.routes["a.wav"] = moved
    with pytest.raises(relaycall.UsageError, match="redirected"):
        await relay.download_recording(audio.url("a.wav"), tmp_path / "a.wav")
    assert leftovers(tmp_path) == []


# --- retries -------------------------------------------------------------------------------------


async def test_a_503_with_retry_after_is_retried_after_its_wait(
    relay: relaycall.AsyncRelay, audio: AudioServer, sleeps: Any, tmp_path: Path
) -> None:
    """A 503 with Retry-After: 2 is retried after 2 s (the policy's wait), then the audio is
    written; both attempts carried the credentials."""
    answers = iter([503, 200])

    async def flaky(request: web.Request) -> web.Response:
        if next(answers) == 503:
            return web.Response(status=503, headers={"Retry-After": "2"}, text="busy")
        return await serve_audio(request)

    audio.routes["a.wav"] = flaky
    assert await relay.download_recording(audio.url("a.wav"), tmp_path / "a.wav") == len(AUDIO)
    assert sleeps.waits == [2.0]
    assert audio.authorizations() == [BASIC, BASIC]
    assert (tmp_path / "a.wav").read_bytes() == AUDIO
    assert leftovers(tmp_path) == ["a.wav"]


async def test_a_404_is_final(
    relay: relaycall.AsyncRelay, audio: AudioServer, tmp_path: Path
) -> None:
    """A 404 raises NotFoundError at once (one request), and leaves no file."""

    async def gone(request: web.Request) -> web.Response:
        return web.json_response({"error": "Not Found"}, status=404)

    audio.routes["a.wav"] = gone
    with pytest.raises(relaycall.NotFoundError) as caught:
        await relay.download_recording(audio.url("a.wav"), tmp_path / "a.wav")
    assert caught.value.status_code == 404
    assert len(audio.seen) == 1
    assert leftovers(tmp_path) == []


async def _drop_mid_body(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Length": str(len(AUDIO))})
    await response.prepare(request)
    await response.write(AUDIO[:1000])
    assert request.transport is not None
    request.transport.close()  # the rest never comes
    return response


async def test_a_connection_dropped_mid_body_leaves_no_file(
    relay: relaycall.AsyncRelay, audio: AudioServer, tmp_path: Path
) -> None:
    """
    A body cut off mid-way is retried (a GET is idempotent), each attempt from the start;
    when every attempt is cut, ConnectionLostError is raised, no temporary file is left,
    and a file already at the path is untouched.
    """
    audio.routes["a.wav"] = _drop_mid_body
    target = tmp_path / "a.wav"
    target.write_bytes(b"the previous version")
    with pytest.raises(relaycall.ConnectionLostError):
        await relay.download_recording(
            audio.url("a.wav"), target, retry=relaycall.RetryPolicy(max_attempts=3)
        )
    assert len(audio.seen) == 3
    assert leftovers(tmp_path) == ["a.wav"]
    assert target.read_bytes() == b"the previous version"


async def test_a_cut_then_complete_body_is_written_whole(
    relay: relaycall.AsyncRelay, audio: AudioServer, tmp_path: Path
) -> None:
    """A first attempt cut mid-body, a second complete: the file holds exactly the audio
    (the partial first attempt was not kept in front of it)."""
    behaviours = iter([_drop_mid_body, serve_audio])

    async def cut_then_whole(request: web.Request) -> web.StreamResponse:
        return await next(behaviours)(request)

    audio.routes["a.wav"] = cut_then_whole
    assert await relay.download_recording(audio.url("a.wav"), tmp_path / "a.wav") == len(AUDIO)
    assert (tmp_path / "a.wav").read_bytes() == AUDIO


# --- the size limit -----------------------------------------------------------------------------


async def _chunked_audio(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()  # no Content-Length: chunked
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(AUDIO), 10_000):
        await response.write(AUDIO[start : start + 10_000])
    await response.write_eof()
    return response


async def test_a_content_length_over_max_bytes_is_refused_unread(
    relay: relaycall.AsyncRelay, audio: AudioServer, tmp_path: Path
) -> None:
    """Content-Length over max_bytes: RecordingTooLargeError naming both, one request, no file."""
    audio.routes["a.wav"] = serve_audio
    with pytest.raises(relaycall.RecordingTooLargeError) as caught:
        await relay.download_recording(audio.url("a.wav"), tmp_path / "a.wav", max_bytes=50_000)
    assert (caught.value.max_bytes, caught.value.content_length) == (50_000, len(AUDIO))
    assert "102400 bytes (Content-Length), over max_bytes=50000" in str(caught.value)
    assert len(audio.seen) == 1
    assert leftovers(tmp_path) == []


async def test_a_chunked_body_over_max_bytes_is_cut_off(
    relay: relaycall.AsyncRelay, audio: AudioServer, tmp_path: Path
) -> None:
    """Without Content-Length the limit is enforced while reading: an error, no file; the same
    body within the limit downloads."""
    audio.routes["a.wav"] = _chunked_audio
    with pytest.raises(relaycall.RecordingTooLargeError) as caught:
        await relay.download_recording(audio.url("a.wav"), tmp_path / "a.wav", max_bytes=50_000)
    assert caught.value.content_length is None
    assert leftovers(tmp_path) == []
    size = await relay.download_recording(
        audio.url("a.wav"), tmp_path / "a.wav", max_bytes=len(AUDIO)
    )
    assert size == len(AUDIO)


async def test_a_body_longer_than_its_content_length_is_not_taken(
    relay: relaycall.AsyncRelay, audio: AudioServer, tmp_path: Path
) -> None:
    """A server announcing a small Content-Length but sending a large body does not get past
    max_bytes: what is read is the announced length, never more than the limit."""

    async def lying(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write(AUDIO)
        return response

    audio.routes["a.wav"] = lying
    size = await relay.download_recording(audio.url("a.wav"), tmp_path / "a.wav", max_bytes=2000)
    assert size == 1000
    assert (tmp_path / "a.wav").read_bytes() == AUDIO[:1000]


async def test_streaming_hands_out_chunks_within_the_limit_then_raises(
    relay: relaycall.AsyncRelay, audio: AudioServer
) -> None:
    """stream_recording yields the audio as it comes, in chunks of at most 64 KiB; past
    max_bytes it raises, having handed out no more than the limit."""
    audio.routes["a.wav"] = _chunked_audio
    chunks = [c async for c in relay.stream_recording(audio.url("a.wav"))]
    assert b"".join(chunks) == AUDIO
    assert max(map(len, chunks)) <= 65536
    got: list[int] = []

    async def consume() -> None:
        async for chunk in relay.stream_recording(audio.url("a.wav"), max_bytes=25_000):
            got.append(len(chunk))

    with pytest.raises(relaycall.RecordingTooLargeError):
        await consume()
    assert sum(got) <= 25_000


# --- bad input ------------------------------------------------------------------------------------


async def test_bad_arguments_are_usage_errors_naming_them(
    relay: relaycall.AsyncRelay, audio: AudioServer, tmp_path: Path
) -> None:
    """A result without a URL, a wrong type, a bad max_bytes or path: UsageError naming it,
    before any request."""
    unfinished = relaycall.RecordingResult(
        call_id="c", control_id="r", state="error", reason="call_ended"
    )
    url = audio.url("a.wav")
    cases: list[tuple[Callable[[], Awaitable[Any]], str]] = [
        (lambda: relay.download_recording(unfinished, tmp_path / "a"), "has no url"),
        (lambda: relay.download_recording(5, tmp_path / "a"), "RecordingResult"),  # type: ignore[arg-type]
        (lambda: relay.download_recording(url, tmp_path / "a", max_bytes=0), "max_bytes"),
        (lambda: relay.download_recording(url, tmp_path / "a", max_bytes=True), "max_bytes"),
        (lambda: relay.download_recording(url, tmp_path / "no" / "a"), "does not exist"),
        (lambda: relay.download_recording(url, tmp_path), "is a directory"),
        (lambda: relay.download_recording(url, 5), "path must be"),  # type: ignore[arg-type]
        (lambda: relay.download_recording(url, tmp_path / "a", retry=3), "retry must be"),  # type: ignore[arg-type]
        (lambda: relay.download_recording(url, tmp_path / "a", timeout="1"), "timeout"),  # type: ignore[arg-type]
    ]
    for attempt, message in cases:
        with pytest.raises(relaycall.UsageError, match=message):
            await attempt()
    assert audio.seen == []
    assert leftovers(tmp_path) == []


async def test_a_closed_session_refuses(audio: AudioServer, tmp_path: Path) -> None:
    """After close(), a download raises ClientClosedError and sends nothing."""
    audio.routes["a.wav"] = serve_audio
    relay = relaycall.AsyncRelay(PROJECT, TOKEN, base_url=audio.base)
    await relay.close()
    with pytest.raises(relaycall.ClientClosedError):
        await relay.download_recording(audio.url("a.wav"), tmp_path / "a.wav")
    assert audio.seen == []


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=st.text(max_size=60) | st.text(max_size=60).map("http://127.0.0.1:9/".__add__))
def test_any_text_as_a_url_is_a_usage_error_or_fetched(url: str, tmp_path: Path) -> None:
    """Any text given as the URL is refused with UsageError or fetched; nothing else escapes
    (a closed port makes a fetch a ConnectError, retries off)."""
    assume("://" not in url or url.startswith("http://127.0.0.1:9/"))  # loopback only

    async def attempt() -> None:
        async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url="http://127.0.0.1:9") as relay:
            with contextlib.suppress(relaycall.UsageError, relaycall.TransportError):
                await relay.download_recording(url, tmp_path / "a.wav", retry=None, timeout=2)

    asyncio.run(attempt())


async def test_a_cancelled_download_leaves_no_file(
    relay: relaycall.AsyncRelay, audio: AudioServer, tmp_path: Path
) -> None:
    """A download cancelled mid-body (the task awaiting it cancelled) removes its temporary
    file and raises CancelledError."""
    started, release = asyncio.Event(), asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(AUDIO))})
        await response.prepare(request)
        await response.write(AUDIO[:1000])
        started.set()
        await release.wait()  # the rest is never sent while the test runs
        return response

    audio.routes["a.wav"] = stall
    task = asyncio.create_task(relay.download_recording(audio.url("a.wav"), tmp_path / "a.wav"))
    await asyncio.wait_for(started.wait(), 10)
    assert [name.endswith(".part") for name in leftovers(tmp_path)] == [True]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert leftovers(tmp_path) == []


async def test_a_stalled_body_hits_the_read_timeout(audio: AudioServer, tmp_path: Path) -> None:
    """The session's Timeout applies: a body that stops coming raises ReadTimeout after the
    read bound (retries off), leaving no file."""
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(AUDIO))})
        await response.prepare(request)
        await response.write(AUDIO[:1000])
        await release.wait()  # the rest is never sent while the test runs
        return response

    audio.routes["a.wav"] = stall
    timeout = relaycall.Timeout(connect=5, read=0.3, total=None)
    async with relaycall.AsyncRelay(PROJECT, TOKEN, base_url=audio.base, timeout=timeout) as relay:
        try:
            with pytest.raises(relaycall.ReadTimeout):
                await asyncio.wait_for(
                    relay.download_recording(audio.url("a.wav"), tmp_path / "a.wav", retry=None),
                    30,  # far above the 0.3 s read bound: only a missing bound reaches it
                )
        finally:
            release.set()
    assert leftovers(tmp_path) == []
