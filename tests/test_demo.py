"""demo.py: the browser demo answers an image with predict.py's own mask, byte for byte.

The fast tests call the demo's predict function on a really (briefly) trained checkpoint and
compare with predict(); the slow one starts ``python demo.py`` as a real server and drives it
from a real headless Chromium (Debian's chromium + chromium-driver, through selenium): it
uploads an image, downloads the mask the page offers and reads the mask picture it shows, and
compares both with ``python predict.py``'s output for the same image and settings.
"""

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from PIL import Image
from test_base_install import run_without
from test_predict import train_checkpoint, write_inputs

from litseg.demo import KEEP_REQUESTS, DemoPredictor, load_runner, parse_window
from litseg.errors import ConfigError
from litseg.predict import load_predictor, predict
from litseg.runtime.resume import checkpoint_file
from tests.helpers import compose_config, start_cli
from tests.helpers.apt import apt_install

SLIDE = ("slide", "flip", 48)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # instance norm: two steps already give masks of several classes (batch norm's running
    # statistics after two steps leave every pixel background), so equal masks mean something
    return train_checkpoint(tmp_path_factory.mktemp("train_demo"), "loss=ce", "model.norm=instance")


def predict_py(ckpt: Path, image: Path, out: Path, *overrides: str) -> Path:
    """predict()'s mask of ``image`` (the function behind predict.py) with ``overrides``."""
    cfg = compose_config(
        "predict",
        ["progress=false", f"ckpt_path={ckpt}", f"input={image}", f"output={out}", *overrides],
        out.parent,
    )
    try:
        predict(cfg)
    finally:
        GlobalHydra.instance().clear()
    return out / f"{image.stem}.png"


def runner_for(ckpt: Path, tmp: Path, *overrides: str) -> DemoPredictor:
    cfg = compose_config("demo", [f"ckpt_path={ckpt}", *overrides], tmp)
    try:
        runner, loaded = load_runner(cfg)
    finally:
        GlobalHydra.instance().clear()
    assert loaded == ckpt
    return runner


@pytest.mark.parametrize(
    "settings",
    [("whole", "none", None), SLIDE, ("whole", "hflip", None)],
    ids=["whole", "slide-flip", "whole-hflip"],
)
def test_demo_mask_is_predict_py_mask_byte_for_byte(
    ckpt: Path, tmp_path: Path, settings: tuple[str, str, int | None]
) -> None:
    mode, tta, window = settings
    write_inputs(tmp_path / "in")
    image = tmp_path / "in" / "b.png"  # 100x77: not a multiple of the stride
    overrides = [f"inference={mode}", f"inference.tta={'null' if tta == 'none' else tta}"]
    overrides += [f"inference.window={window}"] if window else []
    expected = predict_py(ckpt, image, tmp_path / "out", *overrides)

    runner = runner_for(ckpt, tmp_path)  # starts as whole without TTA, like the page
    try:
        result = runner.predict(image, mode, tta, window)
        assert [p.name for p in result.files] == ["b.png"]
        assert result.files[0].read_bytes() == expected.read_bytes()
        overlay = tmp_path / "out" / "overlays" / "b.png"
        assert result.overlay.read_bytes() == overlay.read_bytes()
        # the picture shown is the same mask in the checkpoint's palette
        truth = np.asarray(Image.open(expected))
        assert len(np.unique(truth)) > 1  # not one flat class: the comparison has teeth
        np.testing.assert_array_equal(result.mask, truth)
        np.testing.assert_array_equal(result.colour, runner.predictor.palette[truth])
    finally:
        runner.close()


def test_page_options_are_predict_py_options(ckpt: Path, tmp_path: Path) -> None:
    runner = runner_for(ckpt, tmp_path, "inference.stride=16")
    try:
        assert runner.default_mode == "whole" and runner.default_tta == "none"
        assert runner.options("whole", "flip") == {"mode": "whole", "stride": 16, "tta": "flip"}
        # slide: the typed window, else the training crop (data.crop_size=64), as predict.py
        assert runner.options("slide", "vflip", [32, 48]) == {
            "mode": "slide",
            "tta": "vflip",
            "window": [32, 48],
        }
        assert runner.options("slide", "none") == {"mode": "slide", "tta": None, "window": 64}
    finally:
        runner.close()
    runner = runner_for(ckpt, tmp_path, "inference=slide", "inference.overlap=0.5")
    try:
        assert runner.default_mode == "slide"
        assert runner.options("slide", "none")["overlap"] == 0.5
        assert "overlap" not in runner.options("whole", "none")
    finally:
        runner.close()


def test_page_settings_are_checked(ckpt: Path, tmp_path: Path) -> None:
    assert parse_window("48x64", None) == [48, 64]
    assert parse_window(" 40 ", None) == 40
    assert parse_window("", 64) == 64
    with pytest.raises(ConfigError, match="window="):
        parse_window("big", None)
    with pytest.raises(ConfigError, match="window"):
        parse_window("0", None)
    runner = DemoPredictor(load_predictor(ckpt), {"mode": "whole"}, workdir=tmp_path / "w")
    with pytest.raises(ConfigError, match="mode='tiles'"):
        runner.options("tiles", "none")
    with pytest.raises(ConfigError, match="tta='rot90'"):
        runner.options("whole", "rot90")


def test_request_folders_are_bounded_and_removed(ckpt: Path, tmp_path: Path) -> None:
    write_inputs(tmp_path / "in")
    work = tmp_path / "work"
    runner = DemoPredictor(load_predictor(ckpt), {"mode": "whole"}, workdir=work)
    assert not work.exists()  # nothing on disk before the first request
    results = [runner.predict(tmp_path / "in" / "a.png", "whole", "none") for _ in range(6)]
    kept = sorted(p for p in work.iterdir())
    assert len(kept) == KEEP_REQUESTS
    assert kept == sorted(r.files[0].parent for r in results[-KEEP_REQUESTS:])
    runner.close()
    assert not work.exists()


def test_run_directory_gives_its_best_checkpoint(ckpt: Path, tmp_path: Path) -> None:
    run_dir = ckpt.parent.parent
    assert checkpoint_file(run_dir) == ckpt
    assert checkpoint_file(ckpt) == ckpt
    # two best candidates: summary.json (data) only picks among the run's own files
    copy = tmp_path / "run"
    (copy / "checkpoints").mkdir(parents=True)
    for name in ("epoch000-a.ckpt", "epoch001-b.ckpt", "last.ckpt"):
        shutil.copy(ckpt, copy / "checkpoints" / name)
    with pytest.raises(ConfigError, match="holds 2 checkpoints"):
        checkpoint_file(copy)
    summary = {"best_checkpoint": "/elsewhere/epoch000-a.ckpt"}
    (copy / "summary.json").write_text(json.dumps(summary))
    assert checkpoint_file(copy) == copy / "checkpoints" / "epoch000-a.ckpt"
    with pytest.raises(ConfigError, match="no such checkpoint file or run directory"):
        checkpoint_file(tmp_path / "missing")


@pytest.mark.slow
def test_without_gradio_one_line_names_the_extra(tmp_path: Path) -> None:
    run = run_without(tmp_path, "gradio", "demo.py")  # checked first, before ckpt_path
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert lines == [
        "litseg: error: python demo.py needs gradio, which is not installed: "
        'pip install -e ".[demo]"'
    ]


# ---------------------------------------------------------------- the real browser


def _browser_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) when both are on PATH."""
    browser = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
    )
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by selenium; skipped with the reason it cannot start."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    paths = _browser_paths()
    if paths is None:
        why = apt_install("chromium", "chromium-driver")
        paths = _browser_paths()
        if paths is None:
            pytest.skip(f"headless Chromium unavailable: {why or 'not on PATH after apt-get'}")
    chromium, chromedriver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,2000",
    ):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    except WebDriverException as exc:
        pytest.skip(f"headless Chromium cannot start: {exc.msg or exc}".splitlines()[0])
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Until ``url`` answers 200; fail with the server's log when it exits or never does."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"demo.py exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"demo.py did not answer {url} in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


@pytest.mark.slow
@pytest.mark.serial
def test_browser_upload_returns_predict_py_mask(
    ckpt: Path, browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    write_inputs(tmp_path / "in")
    image = tmp_path / "in" / "b.png"
    port = _free_port()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # the demo's own request folders
    log = tmp_path / "demo.log"
    with open(log, "w") as stderr:
        server = start_cli(
            "demo.py", f"ckpt_path={ckpt.parent.parent}", f"demo.port={port}", stderr=stderr
        )
    # the real predict.py, started beside the server
    reference = start_cli(
        "predict.py", f"ckpt_path={ckpt}", f"input={image}", f"output={tmp_path / 'out'}"
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for_server(url, server, log)
        # the server answers a moment before launch() returns and the line is logged
        end = time.monotonic() + 60
        while f"Open http://127.0.0.1:{port}" not in log.read_text():
            assert time.monotonic() < end, log.read_text()[-3000:]
            time.sleep(0.2)
        _, err = reference.communicate(timeout=300)
        assert reference.returncode == 0, err[-2000:]
        want = (tmp_path / "out" / "b.png").read_bytes()

        browser.get(url)
        wait = WebDriverWait(browser, 60)
        upload = wait.until(
            EC.presence_of_element_located((By.CSS_SELECTOR, "#demo-input input[type=file]"))
        )
        upload.send_keys(str(image))  # the upload runs the prediction
        link = wait.until(
            EC.presence_of_element_located((By.CSS_SELECTOR, "#demo-download a[download]"))
        )
        assert link.get_attribute("download") == "b.png"
        assert _fetch(link.get_attribute("href")) == want
        # the mask picture the page shows: the same classes in the checkpoint's palette
        shown = browser.find_element(By.CSS_SELECTOR, "#demo-mask img").get_attribute("src")
        truth = np.asarray(Image.open(BytesIO(want)))
        assert len(np.unique(truth)) > 1
        colours = np.asarray(Image.open(BytesIO(_fetch(shown))).convert("RGB"))
        np.testing.assert_array_equal(colours, load_predictor(ckpt).palette[truth])
        assert "circle" in browser.find_element(By.ID, "demo-legend").text

        # slide windows of 48 with flip TTA, chosen on the page
        mode, tta, window = SLIDE
        slide_want = predict_py(
            ckpt,
            image,
            tmp_path / "out_slide",
            f"inference={mode}",
            f"inference.tta={tta}",
            f"inference.window={window}",
        ).read_bytes()
        assert slide_want != want  # else the page's settings would go untested
        browser.find_element(By.CSS_SELECTOR, f"#demo-mode input[value='{mode}']").click()
        browser.find_element(By.CSS_SELECTOR, f"#demo-tta input[value='{tta}']").click()
        box = browser.find_element(By.CSS_SELECTOR, "#demo-window textarea, #demo-window input")
        box.clear()
        box.send_keys(str(window))
        old = link.get_attribute("href")
        browser.find_element(By.ID, "demo-run").click()

        def new_link(driver):
            found = driver.find_elements(By.CSS_SELECTOR, "#demo-download a[download]")
            href = found[0].get_attribute("href") if found else None
            return href if href and href != old else False

        assert _fetch(wait.until(new_link)) == slide_want
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        if reference.poll() is None:
            reference.kill()
    assert server.returncode == 0, log.read_text()[-2000:]  # SIGTERM stops it like Ctrl+C
    assert list((tmp_path / "tmp").glob("litseg-demo-*")) == []  # and it cleans up
