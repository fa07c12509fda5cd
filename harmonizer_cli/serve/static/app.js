// harmonizer serve: the page's behaviour. Plain JS, no library, no build step.
// Upload (XHR, for upload progress) -> poll GET /api/jobs/{id} -> player, waveform, facts, download.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const VIDEO_EXTENSIONS = ["mp4", "mov", "mkv", "webm", "m4v", "avi"];
  const POLL_MS = 400;

  let health = { max_upload_bytes: Infinity, formats: ["wav", "flac", "ogg", "mp3"] };
  let files = { song: null, video: null };
  let previousJob = null;  // deleted when the next one starts: its files are not needed any more
  let shown = null;  // { result, waveform } of the result on screen, redrawn on resize and playback

  // ------------------------------------------------------------------ helpers

  function clock(seconds, decimals = 1) {
    if (!Number.isFinite(seconds)) return "?";
    const sign = seconds < 0 ? "-" : "";
    seconds = Math.abs(seconds);
    const minutes = Math.floor(seconds / 60);
    let rest = (seconds - 60 * minutes).toFixed(decimals);
    if (parseFloat(rest) >= 60) { return clock(Math.round(seconds), decimals); }
    if (parseFloat(rest) < 10) rest = "0" + rest;
    return `${sign}${minutes}:${rest}`;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function setStatus(text, fraction) {
    $("status-text").textContent = text || "";
    const bar = $("progress");
    bar.hidden = fraction === null || fraction === undefined;
    if (!bar.hidden) bar.value = Math.max(0, Math.min(1, fraction));
  }

  function isVideoName(name) {
    const dot = name.lastIndexOf(".");
    return dot >= 0 && VIDEO_EXTENSIONS.includes(name.slice(dot + 1).toLowerCase());
  }

  // Target: "2:30", "1:02:03", "2:30.5" (-> duration) or "150" (-> seconds).
  function parseTarget(text) {
    text = text.trim();
    if (/^\d+(\.\d+)?$/.test(text)) return { field: "seconds", value: text, seconds: parseFloat(text) };
    const match = /^(?:(\d+):)?(\d+):(\d{1,2}(?:\.\d+)?)$/.exec(text);
    if (!match) throw new Error(`Type the length as minutes:seconds, like 2:30 (not "${text}").`);
    const [hours, minutes, seconds] = [parseInt(match[1] || "0", 10), parseInt(match[2], 10), parseFloat(match[3])];
    if (seconds >= 60 || (match[1] !== undefined && minutes >= 60)) {
      throw new Error("Minutes and seconds must be below 60.");
    }
    return { field: "duration", value: text, seconds: hours * 3600 + minutes * 60 + seconds };
  }

  // ------------------------------------------------------------------ choosing files

  function setFile(kind, file) {
    files[kind] = file || null;
    const zone = $(`${kind}-drop`);
    zone.classList.toggle("chosen", !!file);
    const name = $(`${kind}-name`);
    if (kind === "song") {
      name.textContent = file ? file.name : "Drop a song here, or choose a file";
    } else {
      name.textContent = file ? file.name : "Drop a clip to give it this music";
      $("video-clear").hidden = !file;
      $("mode-clip").disabled = !file;
      $("mode-clip").checked = !!file;
      $("mode-length").checked = !file;
      $("mode-length").disabled = !!file;
      $("target").disabled = !!file;
      $("format").disabled = !!file;
      $("keep-row").hidden = !file;  // the clip's own sound: only with a clip
      if (!file) {
        $("video").value = "";
        $("keep-audio").checked = false;
        $("keep-db").disabled = true;
      }
    }
    showError("");
  }

  function acceptDrop(zone, kind) {
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      event.stopPropagation();
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      event.stopPropagation();
      zone.classList.remove("dragging");
      const dropped = event.dataTransfer.files;
      if (!dropped.length) return;
      const input = $(kind);
      try { input.files = dropped; } catch (error) { /* older browsers: keep our own reference */ }
      setFile(kind, dropped[0]);
    });
  }

  function routeDropOnPage(event) {
    event.preventDefault();
    if (event.type !== "drop" || !event.dataTransfer.files.length) return;
    const file = event.dataTransfer.files[0];
    const video = file.type.startsWith("video/") || isVideoName(file.name);
    setFile(video ? "video" : "song", file);
  }

  // ------------------------------------------------------------------ running a job

  // A number field's text, checked; "" when it is empty. Throws an Error naming the field to focus.
  function numberField(id, check, message) {
    const input = $(id);
    const text = input.value.trim();
    if (input.validity.badInput || (text && !check(Number(text)))) {
      const error = new Error(message);
      error.field = id;
      throw error;
    }
    return text;
  }

  function buildForm() {
    const form = new FormData();
    if (files.video) {
      form.append("seed", $("seed").value || "0");
      form.append("video", files.video, files.video.name);
      if ($("keep-audio").checked) {
        const level = numberField("keep-db", (v) => Number.isFinite(v) && v >= -60 && v <= 0,
                                  "Type the level of the clip's own sound in dB, from -60 to 0 (like -12).");
        form.append("keep_original_audio", level || "-12");
      }
    } else {
      let target;
      try { target = parseTarget($("target").value); } catch (error) { error.field = "target"; throw error; }
      form.append(target.field, target.value);
      form.append("seed", $("seed").value || "0");
      form.append("format", $("format").value);
    }
    const fade = numberField("fade-out", (v) => Number.isFinite(v) && v >= 0,
                             "Type the fade-out in seconds, 0 or more (0: no fade).");
    if (fade && Number(fade) > 0) form.append("fade_out", fade);
    form.append("file", files.song, files.song.name);
    return form;
  }

  function upload(form) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", "/api/jobs");
      request.responseType = "json";
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) setStatus(`Uploading… ${Math.round(100 * event.loaded / event.total)} %`,
                                              event.loaded / event.total);
      });
      request.addEventListener("load", () => resolve({ status: request.status, body: request.response || {} }));
      request.addEventListener("error", () => reject(new Error("The upload failed: is the server still running?")));
      request.send(form);
    });
  }

  async function poll(url) {
    for (;;) {
      const response = await fetch(url, { cache: "no-store" });
      const job = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(job.error || `the server answered ${response.status}`);
      if (job.status === "done") return job;
      if (job.status === "failed") throw new Error(job.error);
      if (job.status === "queued") {
        setStatus(`Waiting for a free worker (number ${job.queue_position} in the queue)…`, 0);
      } else {
        setStatus(`Extending ${job.input_name}… ${Math.round(100 * job.progress)} %`, job.progress);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  async function onSubmit(event) {
    event.preventDefault();
    showError("");
    if (!files.song) { showError("Choose a song first (or drop one on the page)."); $("song").focus(); return; }
    let form;
    try { form = buildForm(); } catch (error) { showError(error.message); $(error.field || "target").focus(); return; }
    const size = files.song.size + (files.video ? files.video.size : 0);
    if (size > health.max_upload_bytes) {
      showError(`${files.song.name}: too large to upload (this server accepts at most `
                + `${Math.round(health.max_upload_bytes / 1048576)} MB).`);
      return;
    }
    $("extend").disabled = true;
    if (previousJob) fetch(previousJob, { method: "DELETE" }).catch(() => {});
    previousJob = null;
    try {
      setStatus("Uploading…", 0);
      const answer = await upload(form);
      if (answer.status !== 202) throw new Error(answer.body.error || `the server answered ${answer.status}`);
      previousJob = answer.body.status_url;
      setStatus("Queued…", 0);
      const job = await poll(answer.body.status_url);
      const seams = job.result.seams.length;
      setStatus(`Done: ${clock(job.result.output_seconds, 3)}, ${seams} seam${seams === 1 ? "" : "s"}.`, 1);
      await showResult(job);
    } catch (error) {
      setStatus("", null);
      showError(error.message);
    } finally {
      $("extend").disabled = false;
    }
  }

  // ------------------------------------------------------------------ the result

  function fact(list, term, value) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = value;
    list.append(dt, dd);
  }

  function markers(result) {
    const duration = result.output_seconds;
    const seams = result.seams || [];
    const last = (result.segments || []).at(-1);
    return {
      duration,
      beginning: seams.length ? [0, seams[0]] : null,
      seams,
      ending: last && seams.length ? [last.output_start, duration] : null,
      stretch: result.stretch ? result.stretch.region_seconds : null,
    };
  }

  function describe(result) {
    const mark = markers(result);
    const facts = $("facts");
    facts.replaceChildren();
    fact(facts, "Duration", `${clock(result.output_seconds, 3)} (${result.output_seconds.toFixed(3)} s; `
                            + `asked ${result.target_seconds.toFixed(3)} s)`);
    fact(facts, "Original", `${result.input} (${clock(result.input_seconds, 2)})`);
    if (result.video) fact(facts, "Clip", `${result.video} (${clock(result.video_seconds, 3)}): `
                                          + "its video, with this music as its sound");
    fact(facts, "Original beginning", mark.beginning ? `0:00 to ${clock(mark.beginning[1])}` : "the whole song");
    fact(facts, "Seams", mark.seams.length ? mark.seams.map((t) => clock(t)).join(", ") : "none");
    fact(facts, "Real ending", mark.ending ? `from ${clock(mark.ending[0])}` : "—");
    fact(facts, "Stretch", result.stretch
      ? `${((result.stretch.factor - 1) * 100).toFixed(1)} % over ${clock(mark.stretch[0])}–${clock(mark.stretch[1])}`
      : "none");
    if (result.tempo_bpm) fact(facts, "Tempo", `${result.tempo_bpm.toFixed(1)} BPM`);
    fact(facts, "Audio", `${result.sample_rate} Hz, ${result.channels} channel${result.channels === 1 ? "" : "s"}`);
    if (result.fallback) fact(facts, "Fallback", result.fallback);

    const legend = $("legend");
    legend.replaceChildren();
    const item = (kind, text) => {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = `swatch ${kind}`;
      swatch.setAttribute("aria-hidden", "true");
      li.append(swatch, document.createTextNode(text));
      legend.append(li);
    };
    if (mark.beginning) item("begin", `original beginning (to ${clock(mark.beginning[1])})`);
    item("seam", `${mark.seams.length} seam${mark.seams.length === 1 ? "" : "s"}`);
    if (mark.ending) item("end", `real ending (from ${clock(mark.ending[0])})`);
    if (mark.stretch) item("stretch", "stretched passage");
    $("waveform").setAttribute("aria-label", `Waveform of the result, ${clock(mark.duration)} long: `
      + `${legend.textContent.replace(/\)(?=\S)/g, "), ")}. Click or use the arrow keys to seek.`);
  }

  async function showResult(job) {
    const video = isVideoName(job.download_name);
    const player = video ? $("video-player") : $("player");
    $("player").hidden = video;
    $("video-player").hidden = !video;
    for (const element of [$("player"), $("video-player")]) { element.pause(); }
    player.src = job.result_url;
    $("download").href = job.result_url;
    $("download").setAttribute("download", job.download_name);
    $("download").textContent = `Download ${job.download_name}`;
    $("json").textContent = JSON.stringify(job.result, null, 2);
    describe(job.result);
    $("result").hidden = false;
    let waveform = null;
    try {
      const response = await fetch(job.waveform_url, { cache: "no-store" });
      if (response.ok) waveform = await response.json();
    } catch (error) { /* the markers are drawn without it */ }
    shown = { result: job.result, waveform, player };
    draw();
    $("result-title").focus();
  }

  // ------------------------------------------------------------------ the waveform

  function colour(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // Seconds between time labels: at most 10 labels, at least 56 CSS pixels apart.
  function tickStep(duration, cssWidth) {
    const most = Math.max(1, Math.min(10, Math.floor(cssWidth / 56)));
    for (const step of [5, 10, 15, 30, 60, 120, 300, 600, 1200]) { if (duration / step <= most) return step; }
    return 1800;
  }

  function draw() {
    if (!shown) return;
    const canvas = $("waveform");
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    const context = canvas.getContext("2d");
    const mark = markers(shown.result);
    const x = (t) => (t / mark.duration) * width;
    const axis = 16 * ratio;
    const middle = (height - axis) / 2;
    context.clearRect(0, 0, width, height);

    const region = (span, fill) => {
      if (!span) return;
      context.fillStyle = fill;
      context.fillRect(x(span[0]), 0, Math.max(1, x(span[1]) - x(span[0])), height - axis);
    };
    region(mark.beginning, colour("--begin"));
    region(mark.ending, colour("--end"));
    region(mark.stretch, colour("--stretch"));

    const wave = shown.waveform;
    context.fillStyle = colour("--wave");
    if (wave && wave.min && wave.min.length) {
      const n = wave.min.length;
      for (let column = 0; column < width; column += 1) {
        const first = Math.floor((column / width) * n);
        const last = Math.max(first + 1, Math.floor(((column + 1) / width) * n));
        let low = 0; let high = 0;
        for (let i = first; i < last && i < n; i += 1) {
          low = Math.min(low, wave.min[i]);
          high = Math.max(high, wave.max[i]);
        }
        const top = middle - high * middle * 0.95;
        const bottom = middle - low * middle * 0.95;
        context.fillRect(column, top, 1, Math.max(1, bottom - top));
      }
    } else {
      context.fillRect(0, middle, width, Math.max(1, ratio));
    }

    context.strokeStyle = colour("--seam");
    context.fillStyle = colour("--seam");
    context.lineWidth = 2 * ratio;
    context.font = `${11 * ratio}px system-ui, sans-serif`;
    context.textBaseline = "top";
    mark.seams.forEach((seam, index) => {
      const at = Math.round(x(seam)) + 0.5;
      context.beginPath();
      context.moveTo(at, 0);
      context.lineTo(at, height - axis);
      context.stroke();
      context.fillText(String(index + 1), at + 3 * ratio, 2 * ratio);
    });

    context.fillStyle = colour("--muted");
    context.textBaseline = "bottom";
    const step = tickStep(mark.duration, width / ratio);
    for (let t = 0; t <= mark.duration + 1e-6; t += step) {
      const at = x(t);
      context.fillRect(at, height - axis, ratio, 4 * ratio);
      const label = clock(t, 0);
      const textWidth = context.measureText(label).width;
      context.fillText(label, Math.min(Math.max(0, at - textWidth / 2), width - textWidth), height);
    }

    const player = shown.player;
    if (player && Number.isFinite(player.currentTime) && player.currentTime > 0) {
      context.fillStyle = colour("--fg");
      context.fillRect(x(player.currentTime), 0, 2 * ratio, height - axis);
    }
  }

  function seekTo(seconds) {
    if (!shown) return;
    const player = shown.player;
    player.currentTime = Math.max(0, Math.min(shown.result.output_seconds, seconds));
    draw();
  }

  function onCanvasKey(event) {
    if (!shown) return;
    const now = shown.player.currentTime || 0;
    const moves = { ArrowLeft: now - 5, ArrowRight: now + 5, Home: 0, End: shown.result.output_seconds - 1 };
    if (event.key in moves) { event.preventDefault(); seekTo(moves[event.key]); }
    if (event.key === " " || event.key === "Enter") {
      event.preventDefault();
      if (shown.player.paused) shown.player.play(); else shown.player.pause();
    }
  }

  // ------------------------------------------------------------------ start

  function start() {
    acceptDrop($("song-drop"), "song");
    acceptDrop($("video-drop"), "video");
    document.addEventListener("dragover", routeDropOnPage);
    document.addEventListener("drop", routeDropOnPage);
    $("song").addEventListener("change", () => setFile("song", $("song").files[0]));
    $("video").addEventListener("change", () => setFile("video", $("video").files[0]));
    $("video-clear").addEventListener("click", () => { setFile("video", null); $("video").focus(); });
    $("keep-audio").addEventListener("change", () => { $("keep-db").disabled = !$("keep-audio").checked; });
    $("form").addEventListener("submit", onSubmit);
    $("waveform").addEventListener("click", (event) => {
      if (!shown) return;
      const box = event.currentTarget.getBoundingClientRect();
      seekTo(((event.clientX - box.left) / box.width) * shown.result.output_seconds);
    });
    $("waveform").addEventListener("keydown", onCanvasKey);
    for (const player of [$("player"), $("video-player")]) {
      player.addEventListener("timeupdate", draw);
      player.addEventListener("seeked", draw);
    }
    window.addEventListener("resize", () => window.requestAnimationFrame(draw));
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", draw);

    fetch("/api/health").then((response) => response.json()).then((answer) => {
      health = answer;
    }).catch(() => showError("Cannot reach the server: is `harmonizer serve` still running?"));
  }

  start();
})();
