"""The page in a real headless Chromium (Selenium): drop the demo song, 1:30, Extend, listen, download.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and
selenium (the ``test`` extra); skips with a message where they are missing.
Also a clip: the song fitted to it, its sound kept under the music, the result played as
a video. Screenshots: the desktop page and a phone-sized window, kept in the test's
temporary folder and copied to /tmp/serve_screenshot.png and
/tmp/serve_screenshot_phone.png (with a clip: /tmp/serve_video_desktop.png and
/tmp/serve_video_phone.png) to be looked at.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from serve_server import LiveServer, make_clip

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.ogg"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: Without these, Chromium in a closed network hangs on connections it tries at start-up.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required", "--mute-audio"]
SHOTS = {"desktop": Path("/tmp/serve_screenshot.png"), "phone": Path("/tmp/serve_screenshot_phone.png"),
         "phone_full": Path("/tmp/serve_screenshot_phone_full.png"),
         "video_desktop": Path("/tmp/serve_video_desktop.png"), "video_phone": Path("/tmp/serve_video_phone.png"),
         "video_phone_form": Path("/tmp/serve_video_phone_form.png")}


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium with a fresh profile, or skip with the reason."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        pytest.skip(f"no headless browser: {', '.join(missing)} missing (apt-get install chromium chromium-driver; "
                    ".ci/run does it where it can)")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1000"]:
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as exc:
        pytest.skip(f"chromium could not start here: {exc.msg}")
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver, tmp_path: Path, name: str, *, width: int, height: int | None = None) -> Path:
    """A screenshot at ``width`` (and ``height``; None: the whole page), in tmp_path and in /tmp."""
    if height is None:
        driver.set_window_size(width, 800)
        height = driver.execute_script("return document.documentElement.scrollHeight"
                                       " + window.outerHeight - window.innerHeight + 16")
    driver.set_window_size(width, height)
    driver.execute_script("window.dispatchEvent(new Event('resize'))")
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    shutil.copyfile(path, SHOTS[name])
    return path


def _wait_for_health(browser) -> None:
    """Until the page has its answer from /api/health (its limits)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return performance.getEntriesByType('resource').some(e => e.name.endsWith('/api/health'))"))


def _finished(player_id: str):
    """A wait condition: 'ready' once the result is shown and its player knows its duration, or the error."""
    def finished(driver):
        return driver.execute_script(
            f"const player = document.getElementById('{player_id}');"
            "const error = document.getElementById('error');"
            "if (!error.hidden) return 'error: ' + error.textContent;"
            "if (player.error) return 'player error: ' + player.error.code + ' ' + player.error.message;"
            "return !document.getElementById('result').hidden && player.readyState >= 1"
            " && player.duration > 0 && 'ready';")
    return finished


def test_page_extends_the_demo_song(tmp_path, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with LiveServer(tmp_path, workers=1) as server:
        browser.get(server.url + "/")
        assert browser.title.startswith("harmonizer")
        _wait_for_health(browser)
        browser.find_element(By.ID, "song").send_keys(str(DEMO))  # what a drop or the file picker does
        assert browser.find_element(By.ID, "song-name").text == "demo.ogg"
        target = browser.find_element(By.ID, "target")
        target.clear()
        target.send_keys("1:30")
        assert not browser.find_element(By.ID, "keep-row").is_displayed()  # no clip: no clip's sound to keep
        browser.find_element(By.ID, "extend").click()
        outcome = WebDriverWait(browser, 180, poll_frequency=0.25).until(_finished("player"))
        assert outcome == "ready", outcome

        duration = browser.execute_script("return document.getElementById('player').duration")
        assert abs(duration - 90.0) <= 0.05
        record = json.loads(browser.find_element(By.ID, "json").get_attribute("textContent"))
        assert record["input"] == "demo.ogg" and abs(record["output_seconds"] - 90.0) <= 0.010
        legend = browser.find_element(By.ID, "legend").text
        assert f"{len(record['seams'])} seams" in legend and "original beginning" in legend \
            and "real ending" in legend
        assert browser.switch_to.active_element.get_attribute("id") == "result-title"  # focus moved to the result
        painted = browser.execute_script(
            "const c = document.getElementById('waveform'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
            "for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n / (c.width * c.height);")
        assert painted > 0.2, f"the waveform is mostly empty ({painted:.2f} of its pixels painted)"

        link = browser.find_element(By.ID, "download")
        assert link.get_attribute("download") == "demo.extended.wav"
        download = server.client.get(link.get_attribute("href"))
        assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
        info = sf.info(io.BytesIO(download.content))
        assert abs(info.frames / info.samplerate - 90.0) <= 0.010

        _screenshot(browser, tmp_path, "desktop", width=1280)
        _screenshot(browser, tmp_path, "phone_full", width=390)
        browser.set_window_size(390, 844)
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than a phone's screen"
        browser.execute_script("document.getElementById('result-title').scrollIntoView()")
        _screenshot(browser, tmp_path, "phone", width=390, height=844)
        browser.get("about:blank")  # close the player's streaming request before the server stops


def test_page_by_keyboard_and_the_cli_error_for_a_text_file(tmp_path, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    def press(key: str) -> str:
        """A key press as a user makes it (to whatever has the focus); the id of what has it after."""
        ActionChains(browser).send_keys(key).perform()
        return browser.switch_to.active_element.get_attribute("id")

    text = tmp_path / "notes.mp3"
    text.write_text("these are my notes, not a song\n" * 10)
    with LiveServer(tmp_path) as server:
        browser.get(server.url + "/")
        _wait_for_health(browser)
        order = []  # by keyboard alone: Tab reaches the song, the fade-out, the length and Extend, in that order
        for _ in range(16):
            order.append(press(Keys.TAB))
            if order[-1] == "extend":
                break
        wanted = ["song", "fade-out", "target", "extend"]
        assert [name for name in order if name in wanted] == wanted, order
        assert "keep-audio" not in order and "keep-db" not in order  # no clip: nothing of a clip's sound
        press(Keys.ENTER)
        hint = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "error").text)
        assert hint.startswith("Choose a song first")
        browser.find_element(By.ID, "song").send_keys(str(text))
        browser.find_element(By.ID, "extend").click()
        error = WebDriverWait(browser, 30).until(
            lambda d: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error").text)
        assert error == "notes.mp3: cannot decode: not an audio file, or a corrupt or unsupported format"
        assert server.client.get("/api/health").json()["status"] == "ok"


def test_page_scores_a_clip(tmp_path, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    clip = make_clip(tmp_path / "holiday.mp4", 50.0)
    with LiveServer(tmp_path, workers=1) as server:
        browser.get(server.url + "/")
        _wait_for_health(browser)
        browser.find_element(By.ID, "song").send_keys(str(DEMO))
        keep = browser.find_element(By.ID, "keep-audio")
        assert not keep.is_displayed()
        browser.find_element(By.ID, "video").send_keys(str(clip))
        assert browser.find_element(By.ID, "video-name").text == "holiday.mp4"
        assert browser.find_element(By.ID, "mode-clip").is_selected()
        assert not browser.find_element(By.ID, "target").is_enabled()
        level = browser.find_element(By.ID, "keep-db")
        assert keep.is_displayed() and not level.is_enabled()  # the level waits for the box
        keep.send_keys(Keys.SPACE)  # by keyboard
        assert keep.is_selected() and level.is_enabled() and level.get_attribute("value") == "-12"
        level.clear()
        level.send_keys("-20")
        fade = browser.find_element(By.ID, "fade-out")
        fade.clear()
        fade.send_keys("3")
        _screenshot(browser, tmp_path, "video_phone_form", width=390)  # the form with a clip, before Extend
        browser.set_window_size(1280, 1000)
        browser.find_element(By.ID, "extend").click()
        outcome = WebDriverWait(browser, 120, poll_frequency=0.25).until(_finished("video-player"))
        assert outcome == "ready", outcome
        assert not browser.find_element(By.ID, "player").is_displayed()
        duration = browser.execute_script("return document.getElementById('video-player').duration")
        assert abs(duration - 50.0) <= 0.05
        record = json.loads(browser.find_element(By.ID, "json").get_attribute("textContent"))
        assert record["video"] == "holiday.mp4" and abs(record["output_seconds"] - 50.0) <= 0.010
        assert "holiday.mp4 (0:50.000)" in browser.find_element(By.ID, "facts").text
        link = browser.find_element(By.ID, "download")
        assert link.get_attribute("download") == "holiday.extended.mp4"
        assert server.client.get(link.get_attribute("href")).headers["content-type"] == "video/mp4"
        spec = server.pool.get(link.get_attribute("href").split("/")[-2]).spec  # what the page sent
        assert spec.fade_out_seconds == 3.0 and spec.keep_original_audio_db == -20.0 and spec.format == "mp4"
        _screenshot(browser, tmp_path, "video_desktop", width=1280)
        _screenshot(browser, tmp_path, "video_phone", width=390)
        browser.set_window_size(390, 844)
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than a phone's screen"
        browser.get("about:blank")
