/* microray dashboard: the Timeline and a job's page (the helpers are views.js's MR.ui). */
"use strict";

(function () {
  const MR = window.MR;
  const h = MR.h;
  const V = MR.views;
  const { region, fill, section, link, mono, confirmButton } = MR.ui;

  function fmtSpan(s) {
    if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms";
    if (s < 120) return s.toFixed(s < 10 ? 2 : 1) + " s";
    return (s / 60).toFixed(1) + " min";
  }
  /* the same name always gets the same of 8 colours */
  function colour(name) {
    let x = 0;
    for (const ch of String(name)) x = (x * 31 + ch.charCodeAt(0)) >>> 0;
    return "tl-c" + (x % 8);
  }

  /* Chrome trace events ("ph": "X") as bars, one lane per worker, lanes grouped by node.
     Returns an SVG in a scrolling figure, or a note when there is nothing to draw. */
  MR.timelineChart = function (events, spanS) {
    if (!events.length) return h("p", { class: "note" }, "No task has ended yet: bars appear as tasks finish.");
    let t1 = 0;
    for (const e of events) t1 = Math.max(t1, e.ts + e.dur);
    let shown = spanS ? events.filter((e) => e.ts + e.dur >= t1 - spanS * 1e6) : events;
    let t0 = Infinity;
    for (const e of shown) t0 = Math.min(t0, e.ts);
    const lanes = new Map(); // node -> Map(worker -> [events])
    for (const e of shown) {
      const node = (e.args && e.args.node_id) || e.pid;
      if (!lanes.has(node)) lanes.set(node, new Map());
      const w = lanes.get(node);
      if (!w.has(e.tid)) w.set(e.tid, []);
      w.get(e.tid).push(e);
    }
    const W = 1000, L = 150, R = 10, ROW = 20, HEAD = 20, AX = 24;
    let rows = 0;
    for (const w of lanes.values()) rows += 1 + w.size;
    const H = AX + rows * ROW + 6;
    const span = Math.max(t1 - t0, 1); // µs
    const x = (ts) => L + ((ts - t0) / span) * (W - L - R);
    const nWorkers = [...lanes.values()].reduce((n, w) => n + w.size, 0);
    const label = "Task timeline: " + shown.length + " tasks on " + nWorkers + " workers of " + lanes.size + " nodes over " + fmtSpan(span / 1e6);
    const svg = MR.svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "timeline", role: "img", "aria-label": label,
      "data-bars": shown.length }, MR.svg("title", { text: label }));
    for (let i = 0; i <= 5; i++) {
      const t = t0 + (span * i) / 5;
      svg.append(MR.svg("line", { x1: x(t), x2: x(t), y1: AX - 6, y2: H, class: "grid" }));
      svg.append(MR.svg("text", { x: x(t), y: AX - 10, class: "axis", "text-anchor": i === 0 ? "start" : i === 5 ? "end" : "middle",
        text: "+" + fmtSpan((t - t0) / 1e6) }));
    }
    let y = AX;
    for (const [node, workers] of [...lanes.entries()].sort()) {
      svg.append(MR.svg("text", { x: 4, y: y + ROW - 6, class: "tl-node", text: "node " + String(node).slice(0, 12) }));
      svg.append(MR.svg("line", { x1: 0, x2: W, y1: y + 2, y2: y + 2, class: "tl-sep" }));
      y += ROW;
      for (const [tid, evs] of [...workers.entries()].sort()) {
        svg.append(MR.svg("text", { x: 14, y: y + ROW - 6, class: "axis", text: tid }));
        const lane = MR.svg("g", { class: "tl-lane", "data-node-id": node, "data-worker": tid });
        for (const e of evs) {
          const a = e.args || {};
          const bar = MR.svg("rect", {
            x: x(e.ts).toFixed(2), y: y + 3, width: Math.max(1.5, (e.dur / span) * (W - L - R)).toFixed(2), height: ROW - 6, rx: 2,
            class: "tl-bar " + colour(e.name) + (a.state === "FAILED" ? " tl-failed" : ""),
            "data-task-id": a.task_id, "data-name": e.name, "data-state": a.state,
          }, MR.svg("title", { text: e.name + " · " + (a.state || "") + " · ran " + fmtSpan(e.dur / 1e6) + " · worker " + tid }));
          lane.append(a.task_id ? MR.svg("a", { href: "#/task/" + a.task_id }, bar) : bar);
        }
        svg.append(lane);
        y += ROW;
      }
    }
    const names = [...new Set(shown.map((e) => e.name))].slice(0, 12);
    return h("figure", { class: "timeline-fig" },
      h("figcaption", {}, label),
      h("div", { class: "scroll-x" }, svg),
      h("ul", { class: "legend" }, names.map((n) => h("li", {}, h("span", { class: "swatch " + colour(n), "aria-hidden": "true" }), n)),
        shown.some((e) => e.args && e.args.state === "FAILED") ? h("li", {}, h("span", { class: "swatch tl-failed-swatch", "aria-hidden": "true" }), "failed (red outline)") : null));
  };

  /* ------------------------------------------------------------------ Timeline */
  V.timeline = {
    title: "Timeline",
    render(main, arg, query) {
      const limit = h("select", { id: "t-limit" }, [200, 1000, 5000, 20000].map((n) => h("option", { value: n }, "newest " + MR.num(n) + " tasks")));
      limit.value = query.get("limit") || "1000";
      const span = h("select", { id: "t-span" }, [["", "whole span"], ["10", "last 10 s"], ["60", "last minute"], ["300", "last 5 minutes"]]
        .map(([v, t]) => h("option", { value: v }, t)));
      const job = h("input", { id: "t-job", type: "text", placeholder: "job id", autocomplete: "off", size: 10, value: query.get("job_id") || "" });
      const follow = h("input", { id: "t-follow", type: "checkbox", checked: true });
      const download = h("a", { download: "microray-timeline.json" }, "Download as Chrome trace JSON");
      const status = h("p", { class: "muted", role: "status", id: "timeline-status" });
      const out = region("Timeline");
      const form = h("form", { class: "filters", role: "search", "aria-label": "Timeline options" },
        h("label", { for: "t-limit" }, "Show"), limit, h("label", { for: "t-span" }, "Span"), span,
        h("label", { for: "t-job" }, "Job"), job, h("button", { type: "submit" }, "Apply"),
        follow, h("label", { for: "t-follow" }, "follow"));
      main.append(h("h2", {}, "Timeline"),
        h("p", { class: "muted" }, "Ended tasks as bars over time, one lane per worker, grouped by node (open a bar for its task). ",
          "For chrome://tracing or Perfetto: ", download, " (", mono("microray timeline"), " writes the same)."),
        form, status, out);
      let first = true;
      form.addEventListener("submit", (e) => { e.preventDefault(); refresh(true); });
      for (const el of [limit, span]) el.addEventListener("change", () => refresh(true));
      async function refresh(force) {
        if (!first && !force && !follow.checked) return;
        first = false;
        const q = new URLSearchParams({ limit: limit.value });
        if (job.value.trim()) q.set("job_id", job.value.trim());
        download.setAttribute("href", "/api/v0/timeline?" + q);
        const data = await MR.api("/api/v0/timeline?" + q);
        const o = data.otherData || {};
        status.textContent = "The newest " + MR.num(o.tasks_shown) + " of " + MR.num(o.tasks_ended) + " ended tasks in the history.";
        fill(out, MR.timelineChart(data.traceEvents, Number(span.value) || 0));
      }
      return refresh;
    },
  };

  /* ------------------------------------------------------------------ Job detail */
  V.job = {
    title: "Job",
    render(main, jobId) {
      const facts = region("Job facts");
      const logOut = region("Driver log");
      const tasksOut = region("Job tasks");
      const actorsOut = region("Job actors");
      main.append(h("p", {}, link("#/jobs", "← All jobs")), h("h2", {}, "Job ", mono(jobId)), facts,
        h("h3", {}, "Driver log"), logOut, tasksOut, actorsOut);
      let logText = "", logOffset = 0;
      return async () => {
        let d;
        try {
          d = await MR.api("/api/v0/jobs/" + encodeURIComponent(jobId));
        } catch (e) {
          if (e.status === 404) { fill(facts, h("p", {}, "No such job: " + e.message)); return; }
          throw e;
        }
        const s = d.submission;
        const drv = d.drivers;
        const status = s ? s.status : drv.length ? drv[0].status : "—";
        const start = s ? s.start_time : drv.length ? drv[0].start_time : null;
        const end = s ? s.end_time : drv.length ? drv[0].end_time : null;
        const rows = [
          ["Status", MR.badge(status)], ["Type", s ? "submitted (" + mono("microray job submit") + ")" : "driver"],
          ["Entrypoint", mono(s ? s.entrypoint : drv.length ? drv[0].entrypoint : "")],
          ["Started", MR.time(start)], ["Ended", MR.time(end)],
          ["Duration", start ? MR.duration((end || Date.now() / 1000) - start) + (end ? "" : " so far") : "—"],
        ];
        if (s) rows.push(["Exit code", s.driver_exit_code === null ? "—" : String(s.driver_exit_code)], ["Message", s.message || "—"]);
        rows.push(["Driver job IDs", d.job_ids.length ? d.job_ids.map((j, i) => [i ? ", " : "", mono(j)]) : "—"],
          ["Driver PIDs", drv.map((x) => x.driver_pid).join(", ") || "—"]);
        fill(facts,
          h("dl", { class: "facts wide" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
          h("p", {}, d.job_ids.map((j) => [link("#/tasks?job_id=" + j, "All tasks of " + j), " · ", link("#/timeline?job_id=" + j, "its timeline"), " "]),
            s && ["RUNNING", "PENDING"].includes(s.status) ? confirmButton("Stop job", "Confirm stop", () => MR.post("/api/jobs/" + s.submission_id + "/stop", {})) : null));
        if (s) {
          const l = await MR.api("/api/jobs/" + encodeURIComponent(s.submission_id) + "/logs?offset=" + logOffset);
          if (l.offset < logOffset) logText = "";
          logText = (logText + l.logs).slice(-200000);
          logOffset = l.offset;
          fill(logOut, h("pre", { class: "log", tabindex: "0", "aria-label": "the job's driver output" }, logText || "(no output yet)"));
        } else {
          fill(logOut, h("p", { class: "note" }, "This driver was started outside the dashboard: its output went to its own terminal."));
        }
        fill(tasksOut, MR.table("Tasks of this job, newest first (" + MR.num(d.tasks.length) + " of " + MR.num(d.tasks_total) + ")", [
          { label: "Task ID", value: (t) => link("#/task/" + t.task_id, MR.short(t.task_id, 16)), cls: "mono" },
          { label: "Name", value: (t) => t.name || "—" },
          { label: "State", value: (t) => MR.badge(t.state) },
          { label: "Type", value: (t) => t.type || "—" },
          { label: "Node", value: (t) => mono(MR.short(t.node_id)), cls: "node" },
          { label: "Worker PID", value: (t) => String(t.worker_pid || "—") },
          { label: "Duration", value: (t) => t.end_time && t.start_time ? MR.duration(t.end_time - t.start_time) : "—" },
        ], d.tasks, { empty: "This job ran no task.", rowAttrs: (t) => ({ "data-state": t.state, "data-name": t.name }) }));
        fill(actorsOut, MR.table("Actors of this job (" + d.actors.length + ")", [
          { label: "Actor ID", value: (a) => link("#/actors?actor_id=" + a.actor_id, MR.short(a.actor_id, 12)) },
          { label: "Class", value: (a) => a.class_name || "—" },
          { label: "Name", value: (a) => a.name || "—" },
          { label: "State", value: (a) => MR.badge(a.state) },
          { label: "PID", value: (a) => String(a.pid || "—") },
          { label: "Node", value: (a) => mono(MR.short(a.node_id)) },
        ], d.actors, { empty: "This job created no actor.", rowAttrs: (a) => ({ "data-name": a.name || "", "data-state": a.state }) }));
      };
    },
  };
})();
