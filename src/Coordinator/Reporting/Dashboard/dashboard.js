// DistTrain's live dashboard: reads /events (server-sent events, one message a second holding the
// status and the steps and epochs not sent before) and draws the curves on canvases.
"use strict";
(function () {
  const Window = 50;
  const data = { steps: [], epochs: [], status: null, messages: 0 };
  window.disttrain = data;   // for tests and the curious: the points the page holds

  const $ = (id) => document.getElementById(id);
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  function movingAverage(values) {
    const out = new Array(values.length);
    let sum = 0, count = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v !== null) { sum += v; count++; }
      if (i >= Window && values[i - Window] !== null) { sum -= values[i - Window]; count--; }
      out[i] = count > 0 ? sum / count : null;
    }
    return out;
  }

  // A line chart: series of {points: [[x, y]...], color, width, dots}; axes from all points.
  // axis: {log: true} draws y on a log scale (positive values); {min, max} bound the y range.
  function draw(canvas, series, yFormat, axis) {
    axis = axis || {};
    if (axis.log) {
      series = series.map((s) => ({ ...s, points: s.points.map((p) => [p[0], p[1] > 0 ? Math.log10(p[1]) : null]) }));
      const format = yFormat;
      yFormat = (v) => format(Math.pow(10, v));
    }
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && isFinite(p[1])));
    const left = 52, right = 10, top = 8, bottom = 24;
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = css("--muted");
    if (all.length === 0) { g.fillText("waiting for the first step", left, top + 20); return; }
    let x0 = Math.min(...all.map((p) => p[0])), x1 = Math.max(...all.map((p) => p[0]));
    let y0 = Math.min(...all.map((p) => p[1])), y1 = Math.max(...all.map((p) => p[1]));
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y1 += 0.5; y0 -= 0.5; }
    const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    if (axis.min !== undefined) y0 = Math.max(y0, axis.min);
    if (axis.max !== undefined) y1 = Math.min(y1, axis.max);
    const X = (x) => left + (x - x0) / (x1 - x0) * (w - left - right);
    const Y = (y) => top + (1 - (y - y0) / (y1 - y0)) * (h - top - bottom);
    g.strokeStyle = css("--line"); g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = y0 + (y1 - y0) * i / 4;
      g.beginPath(); g.moveTo(left, Y(y)); g.lineTo(w - right, Y(y)); g.stroke();
      g.fillText(yFormat(y), 4, Y(y) + 4);
    }
    for (let i = 0; i <= 4; i++) {
      const x = x0 + (x1 - x0) * i / 4;
      const label = String(Math.round(x));
      g.fillText(label, Math.min(X(x) - g.measureText(label).width / 2, w - right - g.measureText(label).width), h - 6);
    }
    for (const s of series) {
      const pts = s.points.filter((p) => p[1] !== null && isFinite(p[1]));
      g.strokeStyle = s.color; g.fillStyle = s.color; g.lineWidth = s.width || 1.5;
      if (s.dots) { for (const p of pts) { g.beginPath(); g.arc(X(p[0]), Y(p[1]), 4, 0, 2 * Math.PI); g.fill(); } continue; }
      g.beginPath();
      pts.forEach((p, i) => (i === 0 ? g.moveTo(X(p[0]), Y(p[1])) : g.lineTo(X(p[0]), Y(p[1]))));
      g.stroke();
    }
  }

  // At most about 1,500 points a line: every k-th step of a long run.
  const thin = (points) => { const k = Math.max(1, Math.ceil(points.length / 1500)); return points.filter((_, i) => i % k === 0 || i === points.length - 1); };

  function time(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds), m = Math.floor(s / 60), hh = Math.floor(m / 60);
    return hh > 0 ? `${hh}:${String(m % 60).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}` : `${m}:${String(s % 60).padStart(2, "0")}`;
  }
  const fixed = (v, n) => (v === null || v === undefined ? "–" : Number(v).toFixed(n));

  function render() {
    const st = data.status;
    if (st) {
      $("model").textContent = st.model;
      const state = $("state");
      state.textContent = st.state;
      state.className = st.state === "training" || st.state === "starting" ? "" : st.state === "completed" ? "ended" : "failed";
      $("step").textContent = `${st.step.toLocaleString()} / ${st.total_steps.toLocaleString()}`;
      $("epoch").textContent = `${st.epoch} / ${st.epochs}`;
      $("loss").textContent = fixed(st.loss, 4);
      $("testacc").textContent = fixed(st.test_accuracy, 4);
      $("ips").textContent = Math.round(st.images_per_second).toLocaleString();
      $("eta").textContent = time(st.eta_seconds);
      $("elapsed").textContent = time(st.elapsed_seconds);
      $("progress").firstElementChild.style.width = `${st.total_steps > 0 ? 100 * st.step / st.total_steps : 0}%`;
      $("workerCount").textContent = `(${st.workers.length}; ${st.worker_joins} joined, ${st.worker_losses} lost)`;
      const rows = $("workers");
      rows.replaceChildren(...st.workers.map((w) => {
        const tr = document.createElement("tr");
        tr.innerHTML = "<td></td><td></td><td></td><td><div class=bar><div></div></div></td>";
        tr.children[0].textContent = w.name;
        tr.children[1].textContent = Math.round(w.images_per_second).toLocaleString();
        tr.children[2].textContent = `${Math.round(100 * w.busy)}%`;
        tr.querySelector(".bar div").style.width = `${Math.round(100 * w.busy)}%`;
        return tr;
      }));
      const list = $("events");
      list.replaceChildren(...st.events.slice().reverse().map((e) => {
        const li = document.createElement("li");
        li.textContent = e;
        li.className = e.includes("lost worker") ? "lost" : e.includes(" joined") ? "joined" : "";
        return li;
      }));
    }
    const steps = data.steps, epochs = data.epochs;
    const x = steps.map((p) => p[0]);
    const lossAvg = movingAverage(steps.map((p) => p[1]));
    const accAvg = movingAverage(steps.map((p) => p[2]));
    const ipsAvg = movingAverage(steps.map((p) => p[3]));
    draw($("lossChart"), [
      { points: thin(steps.map((p) => [p[0], p[1]])), color: "#f0b7bf", width: 1 },
      { points: thin(x.map((s, i) => [s, lossAvg[i]])), color: css("--loss"), width: 2 },
      { points: epochs.map((e) => [e[1], e[4]]), color: css("--test"), dots: true },
    ], (v) => (v >= 1 ? v.toFixed(2) : v.toPrecision(2)), { log: true });
    draw($("accChart"), [
      { points: thin(x.map((s, i) => [s, accAvg[i]])), color: css("--acc"), width: 2 },
      { points: epochs.map((e) => [e[1], e[5]]), color: css("--test"), dots: true },
    ], (v) => v.toFixed(3), { min: 0, max: 1 });
    draw($("ipsChart"), [{ points: thin(x.map((s, i) => [s, ipsAvg[i]])), color: css("--ips"), width: 2 }], (v) => Math.round(v).toLocaleString(), { min: 0 });
    const recent = steps.slice(-Window);
    if (recent.length > 0) {
      const compute = recent.reduce((a, p) => a + p[4], 0) / recent.length, reduce = recent.reduce((a, p) => a + p[5], 0) / recent.length;
      const other = Math.max(0, 1 - compute - reduce);
      const parts = $("split").children;
      parts[0].style.width = `${100 * compute}%`; parts[1].style.width = `${100 * reduce}%`; parts[2].style.width = `${100 * other}%`;
      $("splitText").textContent = `(last ${recent.length} steps: ${Math.round(100 * compute)}% compute, ${Math.round(100 * reduce)}% all-reduce, ${Math.round(100 * other)}% other)`;
    }
  }

  function connect() {
    const source = new EventSource("events");
    // A new connection starts the history again from the first step.
    source.onopen = () => { data.steps = []; data.epochs = []; };
    source.onmessage = (event) => {
      const m = JSON.parse(event.data);
      data.status = m.status;
      for (const p of m.steps) data.steps.push(p);
      for (const e of m.epochs) data.epochs.push(e);
      data.messages++;
      render();
      if (m.status.state !== "starting" && m.status.state !== "training") source.close();
    };
    source.onerror = () => {
      if (data.status && data.status.state !== "training" && data.status.state !== "starting") source.close();
      else $("state").textContent = "reconnecting";
    };
  }
  window.addEventListener("resize", render);
  connect();
})();
