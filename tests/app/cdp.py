"""Headless Chromium driven through the DevTools protocol, for the report viewer tests.

Chromium runs with ``--remote-debugging-pipe`` (protocol messages, NUL-terminated JSON, on file
descriptors 3 and 4), so no websocket library is needed. WebGL2 comes from SwiftShader (ANGLE's
software renderer). :class:`Page` records what a person would see go wrong: console errors,
uncaught exceptions, failed loads, and every URL requested.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path

from tests.app.browser import chromium

FLAGS = (
    '--headless=new',
    '--no-sandbox',
    '--use-gl=angle',
    '--use-angle=swiftshader',
    '--enable-unsafe-swiftshader',
    '--ignore-gpu-blocklist',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-quic',
    '--mute-audio',
)
#: No network at all: every host resolves to nothing and every connection goes to a dead proxy.
OFFLINE = ('--proxy-server=127.0.0.1:9', '--host-resolver-rules=MAP * ~NOTFOUND')


class Browser:
    """One Chromium process (``offline``: no network; ``flags``: more switches); :meth:`open`
    gives a :class:`Page`."""

    def __init__(self, offline: bool = False, flags: tuple[str, ...] = (), timeout: float = 120):
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix='chromium-cdp-')
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        # the protocol's descriptors in the child: 3 (commands in) and 4 (replies out); the
        # pipe ends are first moved above 4 so that wiring one cannot overwrite the other
        high_in, high_out = (
            fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child, from_child)
        )
        os.close(to_child)
        os.close(from_child)

        def wire():  # in the child, before exec: dup2 leaves 3 and 4 open across exec
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        args = [
            str(chromium()),
            *FLAGS,
            *(OFFLINE if offline else ()),
            *flags,
            f'--user-data-dir={self._profile.name}',
            '--remote-debugging-pipe',
            'about:blank',
        ]
        self.proc = subprocess.Popen(  # noqa: S603 - fixed arguments
            args,
            close_fds=False,  # Python's own descriptors are not inheritable anyway (PEP 446)
            preexec_fn=wire,  # noqa: PLW1509 - only dup2
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(high_in)
        os.close(high_out)
        self._buffer = b''
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and wait for its reply (events meanwhile go to :attr:`events`)."""
        self._next_id += 1
        message = {'id': self._next_id, 'method': method, 'params': params or {}}
        if session:
            message['sessionId'] = session
        os.write(self._write, json.dumps(message).encode() + b'\0')
        deadline = time.monotonic() + self.timeout
        while True:
            for reply in self._receive(deadline):
                if reply.get('id') == self._next_id:
                    if 'error' in reply:
                        raise RuntimeError(f'{method}: {reply["error"]}')
                    return reply.get('result', {})
                self.events.append(reply)

    def _receive(self, deadline: float) -> list[dict]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError('no reply from chromium')
        ready, _, _ = select.select([self._read], [], [], left)
        if not ready:
            raise TimeoutError('no reply from chromium')
        chunk = os.read(self._read, 1 << 20)
        if not chunk:
            raise RuntimeError('chromium exited')
        self._buffer += chunk
        *messages, self._buffer = self._buffer.split(b'\0')
        return [json.loads(m) for m in messages if m]

    def pump(self, seconds: float) -> None:
        """Collect events for ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.events.extend(self._receive(deadline))
            except TimeoutError:
                return

    def open(self, url: str, size=(1280, 1500)) -> Page:
        target = self.send('Target.createTarget', {'url': 'about:blank'})['targetId']
        session = self.send('Target.attachToTarget', {'targetId': target, 'flatten': True})[
            'sessionId'
        ]
        page = Page(self, session)
        for domain in ('Runtime', 'Log', 'Page', 'Network'):
            page.send(f'{domain}.enable')
        page.send(
            'Emulation.setDeviceMetricsOverride',
            {'width': size[0], 'height': size[1], 'deviceScaleFactor': 1, 'mobile': False},
        )
        page.send('Page.navigate', {'url': url})
        return page

    def close(self) -> None:
        try:
            self.send('Browser.close')
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def _events(self, method: str) -> list[dict]:
        return [
            e['params']
            for e in self.browser.events
            if e.get('sessionId') == self.session and e.get('method') == method
        ]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (promises awaited)."""
        result = self.send(
            'Runtime.evaluate',
            {'expression': expression, 'returnByValue': True, 'awaitPromise': True},
        )
        if 'exceptionDetails' in result:
            raise RuntimeError(f'{expression}: {result["exceptionDetails"]}')
        return result['result'].get('value')

    def wait_for(self, expression: str, timeout: float = 90) -> object:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f'{expression} still false after {timeout} s')
            self.browser.pump(0.25)

    def frames(self, n: int = 3) -> None:
        """Let the page draw ``n`` animation frames."""
        step = 'const f = () => --k ? requestAnimationFrame(f) : r(1); requestAnimationFrame(f);'
        self.evaluate(f'new Promise(r => {{ let k = {n}; {step} }})')

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads so far."""
        self.browser.pump(0.2)
        out = []
        for e in self._events('Runtime.consoleAPICalled'):
            if e['type'] in ('error', 'assert'):
                out.append('console: ' + ' '.join(str(a.get('value', a)) for a in e['args']))
        for e in self._events('Runtime.exceptionThrown'):
            details = e['exceptionDetails']
            out.append(
                'exception: ' + details.get('exception', {}).get('description', str(details))
            )
        for e in self._events('Log.entryAdded'):
            if e['entry']['level'] == 'error':
                out.append(f'log: {e["entry"]["text"]} {e["entry"].get("url", "")}')
        for e in self._events('Network.loadingFailed'):
            out.append(f'load failed: {e.get("errorText")}')
        return out

    def requested_urls(self) -> list[str]:
        self.browser.pump(0.2)
        return [e['request']['url'] for e in self._events('Network.requestWillBeSent')]

    def screenshot(self, selector: str):
        """The element's pixels as an RGB array (it is scrolled into view first)."""
        import numpy as np
        from PIL import Image

        find = f'document.querySelector({json.dumps(selector)})'
        box = self.evaluate(
            f'(() => {{ const e = {find}; e.scrollIntoView({{block: "center"}});'
            ' const r = e.getBoundingClientRect();'
            ' return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })()'
        )
        self.frames()
        x, y, w, h = box
        shot = self.send(
            'Page.captureScreenshot',
            {
                'format': 'png',
                'clip': {'x': x, 'y': y, 'width': w, 'height': h, 'scale': 1},
                'captureBeyondViewport': False,
            },
        )
        png = base64.b64decode(shot['data'])
        return np.asarray(Image.open(io.BytesIO(png)).convert('RGB'))

    def save_screenshot(self, out: Path, full_page: bool = False) -> Path:
        shot = self.send('Page.captureScreenshot', {'format': 'png'})
        Path(out).write_bytes(base64.b64decode(shot['data']))
        return Path(out)
