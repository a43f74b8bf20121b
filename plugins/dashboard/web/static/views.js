/* microray dashboard: the views. Each view builds its frame once (headings, filters) and
   returns a refresh() that the router calls now and every few seconds; refresh only
   replaces the data regions, so what a user typed stays put. */
"use strict";

(function () {
  const MR = window.MR;
  const h = MR.h;
  const V = (MR.views = {});
  const TASK_STATES = ["PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "RUNNING", "FINISHED", "FAILED", "CANCELLED"];
  const ACTOR_STATES = ["DEPENDENCIES_UNREADY", "PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"];

  function region(label) {
    return h("div", { class: "region", "aria-label": label, role: "region" });
  }
  function fill(el, ...nodes) {
    el.replaceChildren(...nodes.flat().filter(Boolean));
  }
  function section(title, ...children) {
    return h("section", { class: "card", "aria-label": title }, h("h3", {}, title), children);
  }
  function stat(label, value, extra) {
    return h("div", { class: "stat" }, h("span", { class: "stat-label" }, label), h("span", { class: "stat-value" }, value), extra ? h("span", { class: "stat-extra" }, extra) : null);
  }
  function demandTable(caption, rows, empty) {
    return MR.table(caption, [
      { label: "Resources", value: (d) => mono(Object.entries(d.resources).map(([k, v]) => k + ": " + v).join(", ")) },
      { label: "Requests", value: (d) => MR.num(d.count) },
    ], rows, { empty });
  }
  function link(href, text) {
    return h("a", { href }, text);
  }
  function mono(text) {
    return h("code", {}, text === null || text === undefined || text === "" ? "—" : String(text));
  }
  function needToken() {
    return !MR.token();
  }
  /* a button that needs a second click to act (no modal dialogs) */
  function confirmButton(label, confirmLabel, action, disabled) {
    const b = h("button", { type: "button", class: "danger", disabled: disabled || needToken() ? true : null,
      title: needToken() ? "Open the URL printed by microray.init() (with its token) to enable actions" : null }, label);
    let armed = false, timer = null;
    b.addEventListener("click", async () => {
      if (!armed) {
        armed = true; b.textContent = confirmLabel; b.classList.add("armed");
        timer = setTimeout(() => { armed = false; b.textContent = label; b.classList.remove("armed"); }, 5000);
        return;
      }
      clearTimeout(timer);
      b.disabled = true; b.textContent = "…";
      try {
        await action();
        b.textContent = "done";
      } catch (e) {
        b.textContent = label; b.disabled = false; armed = false; b.classList.remove("armed");
        MR.flash("Failed: " + e.message, true);
      }
      MR.refreshNow();
    });
    return b;
  }

  MR.ui = { region, fill, section, link, mono, confirmButton }; // for the views of pages.js

  /* ------------------------------------------------------------------ Overview */
  V.overview = {
    title: "Overview",
    render(main) {
      const stats = region("Cluster summary");
      const charts = region("Charts");
      main.append(h("h2", {}, "Overview"), stats, h("h3", { class: "sr-only" }, "Charts"), charts);
      let samples = [];
      return async () => {
        const since = samples.length ? samples[samples.length - 1].time : 0;
        const [c, ts] = await Promise.all([MR.api("/api/v0/cluster"), MR.api("/api/v0/timeseries?since=" + since)]);
        samples = samples.concat(ts.samples).slice(-ts.capacity);
        const counts = c.tasks.counts || {};
        const cpu = c.resources.CPU || { used: 0, total: 0 };
        const pending = (counts.PENDING_ARGS_AVAIL || 0) + (counts.PENDING_NODE_ASSIGNMENT || 0) + (counts.SUBMITTED_TO_WORKER || 0);
        fill(stats,
          h("div", { class: "stats" },
            stat("Nodes", String(c.nodes.alive), c.nodes.alive + " alive, " + c.nodes.dead + " dead"),
            stat("Running tasks", MR.num(counts.RUNNING || 0), MR.num(pending) + " pending"),
            stat("Finished tasks", MR.num(counts.FINISHED || 0), MR.num(counts.FAILED || 0) + " failed"),
            stat("Actors", MR.num(c.actors.total), Object.entries(c.actors.by_state).map(([k, v]) => v + " " + k).join(", ") || "none"),
          ),
          section("Resources",
            Object.entries(c.resources).map(([k, r]) => MR.meter(k, r.used, r.total)),
            MR.meter("Object store", c.object_store.used, c.object_store.capacity, MR.bytes)),
          section("Tasks by state",
            h("ul", { class: "state-counts", "aria-label": "task counts by state" },
              TASK_STATES.filter((s) => counts[s] !== undefined).map((s) =>
                h("li", {}, h("a", { href: "#/tasks?state=" + s }, MR.badge(s), " ", h("span", { class: "count", "data-state": s }, MR.num(counts[s])))))),
            c.tasks.dropped_from_history ? h("p", { class: "note" }, MR.num(c.tasks.dropped_from_history) + " finished tasks were evicted from the history (their counts are kept).") : null),
          section("Resource demand",
            demandTable("Pending demand: lease requests waiting for resources", c.demands.pending,
              "No lease request is waiting for resources."),
            demandTable("Infeasible demand: no alive node has these resources (they wait for a node that does)",
              c.demands.infeasible, "No infeasible lease request.")),
        );
        const pts = (key) => samples.map((s) => [s.time, s[key]]);
        const now = samples.length ? samples[samples.length - 1].time : Date.now() / 1000;
        fill(charts, h("div", { class: "charts" },
          MR.lineChart("Tasks per second and running tasks", [
            { name: "tasks/s", cls: "c1", points: pts("tasks_per_s") },
            { name: "running", cls: "c2", points: pts("running") },
            { name: "pending", cls: "c3", points: pts("pending") },
          ], { now }),
          MR.lineChart("Object store use", [
            { name: "used", cls: "c1", points: pts("store_used") },
          ], { now, format: MR.bytes, minMax: 1024 * 1024 }),
          MR.lineChart("CPUs in use", [
            { name: "CPU used", cls: "c2", points: pts("cpu_used") },
            { name: "CPU total", cls: "c4", points: pts("cpu_total") },
          ], { now }),
        ));
      };
    },
  };

  /* ------------------------------------------------------------------ Nodes */
  V.nodes = {
    title: "Nodes",
    render(main) {
      const out = region("Nodes");
      main.append(h("h2", {}, "Nodes"), out);
      return async () => {
        const data = await MR.api("/api/v0/nodes?limit=1000");
        fill(out, data.nodes.map((n) => {
          const res = Object.keys(n.resources_total).sort();
          return h("article", { class: "card node", "aria-label": "node " + n.node_id },
            h("h3", {}, "Node ", mono(MR.short(n.node_id, 12)), " ", MR.badge(n.state), n.is_head_node ? h("span", { class: "tag" }, "head") : null),
            h("dl", { class: "facts" },
              h("dt", {}, "Address"), h("dd", {}, n.node_ip + ":" + n.raylet_port),
              h("dt", {}, "Raylet PID"), h("dd", {}, String(n.pid || "—")),
              h("dt", {}, "Health"), h("dd", {}, n.state === "ALIVE" ? "heartbeat " + MR.duration(n.heartbeat_age_s) + " ago" : "dead"),
              h("dt", {}, "Started"), h("dd", {}, MR.time(n.start_time))),
            res.map((k) => MR.meter(k, n.resources_total[k] - (n.resources_available[k] || 0), n.resources_total[k])),
            MR.meter("Object store", n.object_store_used, n.object_store_capacity, MR.bytes),
            hostStats(n),
            MR.table("Processes on this node (" + n.workers.length + ")", [
              { label: "PID", value: (w) => String(w.pid) },
              { label: "Type", value: (w) => w.worker_type },
              { label: "State", value: (w) => MR.badge(w.state) },
              { label: "Worker ID", value: (w) => mono(MR.short(w.worker_id, 12)) },
              { label: "Logs", value: (w) => w.worker_type === "WORKER" ? link("#/logs/worker-" + w.worker_id.slice(0, 12) + ".log", "log") : "—" },
            ], n.workers, { empty: "No worker processes." }));
        }));
      };
    },
  };

  /* the machine a node runs on, as its raylet measured it with its last heartbeat */
  function hostStats(n) {
    const x = n.host;
    if (!x) return h("p", { class: "note host" }, "This node's raylet reports no host figures.");
    const pct = (v) => MR.num(v, 1) + "%";
    return h("section", { class: "host", "aria-label": "host of node " + n.node_id, "data-node-id": n.node_id,
      "data-cpu-percent": x.cpu_percent, "data-mem-used": x.mem_used, "data-mem-total": x.mem_total,
      "data-disk-used": x.disk_used, "data-disk-total": x.disk_total },
      h("h4", {}, "Host"),
      MR.meter("Host CPU", x.cpu_percent, 100, pct),
      h("p", { class: "muted host-cpu" }, x.cpu_count + " logical CPUs, load " + MR.num(x.load_avg_1m, 2) + " (1 min)"),
      MR.meter("Host memory", x.mem_used, x.mem_total, MR.bytes),
      MR.meter("Host disk", x.disk_used, x.disk_total, MR.bytes),
      h("p", { class: "muted" }, "Disk: the file system of ", mono(x.disk_path), "; measured ", MR.time(x.sampled_at)));
  }

  /* ------------------------------------------------------------------ Tasks */
  V.tasks = {
    title: "Tasks",
    render(main, arg, query) {
      const PAGE = 50;
      let offset = 0;
      const state = h("select", { id: "f-state", name: "state" }, h("option", { value: "" }, "any state"), TASK_STATES.map((s) => h("option", { value: s }, s)));
      const name = h("input", { id: "f-name", name: "name", type: "text", placeholder: "e.g. f or A.ping", autocomplete: "off" });
      const job = h("input", { id: "f-job", name: "job_id", type: "text", placeholder: "job id", autocomplete: "off", size: 10 });
      state.value = query.get("state") || "";
      name.value = query.get("name") || "";
      job.value = query.get("job_id") || "";
      const form = h("form", { class: "filters", role: "search", "aria-label": "Filter tasks" },
        h("label", { for: "f-state" }, "State"), state,
        h("label", { for: "f-name" }, "Name"), name,
        h("label", { for: "f-job" }, "Job"), job,
        h("button", { type: "submit" }, "Filter"),
        h("button", { type: "button", class: "secondary", onclick: () => { state.value = ""; name.value = ""; job.value = ""; apply(); } }, "Clear"));
      const status = h("p", { class: "muted", id: "tasks-status", role: "status" });
      const out = region("Task list");
      const prev = h("button", { type: "button", class: "secondary", onclick: () => { offset = Math.max(0, offset - PAGE); refresh(); } }, "← Newer");
      const next = h("button", { type: "button", class: "secondary", onclick: () => { offset += PAGE; refresh(); } }, "Older →");
      const pager = h("div", { class: "pager", role: "navigation", "aria-label": "Task pages" }, prev, status, next);
      main.append(h("h2", {}, "Tasks"), form, pager, out);
      function apply() {
        offset = 0;
        const q = new URLSearchParams();
        if (state.value) q.set("state", state.value);
        if (name.value.trim()) q.set("name", name.value.trim());
        if (job.value.trim()) q.set("job_id", job.value.trim());
        history.replaceState(null, "", "#/tasks" + (q.toString() ? "?" + q : ""));
        refresh();
      }
      form.addEventListener("submit", (e) => { e.preventDefault(); apply(); });
      state.addEventListener("change", apply);
      async function refresh() {
        const q = new URLSearchParams({ limit: PAGE, offset });
        if (state.value) q.set("state", state.value);
        if (name.value.trim()) q.set("name", name.value.trim());
        if (job.value.trim()) q.set("job_id", job.value.trim());
        const data = await MR.api("/api/v0/tasks?" + q);
        const first = data.total ? offset + 1 : 0;
        status.textContent = "Showing " + MR.num(first) + "–" + MR.num(offset + data.tasks.length) + " of " + MR.num(data.total) + " matching tasks" +
          (data.dropped_from_history ? " (" + MR.num(data.dropped_from_history) + " older finished tasks evicted)" : "");
        prev.disabled = offset === 0;
        next.disabled = offset + PAGE >= data.total;
        fill(out, MR.table("Tasks, newest first", [
          { label: "Task ID", value: (t) => link("#/task/" + t.task_id, t.task_id), cls: "mono" },
          { label: "Name", value: (t) => t.name || "—", cls: "name" },
          { label: "State", value: (t) => MR.badge(t.state) },
          { label: "Type", value: (t) => t.type || "—" },
          { label: "Job", value: (t) => t.job_id ? link("#/job/" + t.job_id, t.job_id) : "—" },
          { label: "Node", value: (t) => mono(MR.short(t.node_id)), cls: "node" },
          { label: "Worker PID", value: (t) => String(t.worker_pid || "—") },
          { label: "Attempt", value: (t) => String(t.attempt || 0) },
          { label: "Duration", value: (t) => t.end_time && t.start_time ? MR.duration(t.end_time - t.start_time) : "—" },
        ], data.tasks, { empty: "No tasks match.", rowAttrs: (t) => ({ "data-state": t.state, "data-name": t.name }) }));
      }
      return refresh;
    },
  };

  /* ------------------------------------------------------------------ Task detail */
  V.task = {
    title: "Task",
    render(main, taskId) {
      const out = region("Task detail");
      main.append(h("p", {}, link("#/tasks", "← All tasks")), h("h2", {}, "Task ", mono(taskId)), out);
      return async () => {
        let t;
        try {
          t = await MR.api("/api/v0/tasks/" + encodeURIComponent(taskId));
        } catch (e) {
          if (e.status === 404) { fill(out, h("p", {}, "This task is not in the history (it may have been evicted).")); return; }
          throw e;
        }
        const ended = ["FINISHED", "FAILED", "CANCELLED"].includes(t.state);
        const facts = [
          ["Name", t.name], ["State", MR.badge(t.state)], ["Type", t.type], ["Function", t.func_or_class_name],
          ["Job", t.job_id], ["Actor", t.actor_id ? link("#/actors?actor_id=" + t.actor_id, t.actor_id) : "—"],
          ["Node", mono(t.node_id)], ["Worker", mono(t.worker_id)], ["Worker PID", t.worker_pid],
          ["Attempt", t.attempt || 0], ["Owner", mono(t.owner)], ["Parent task", t.parent_task_id ? link("#/task/" + t.parent_task_id, t.parent_task_id) : "—"],
          ["Resources", Object.entries(t.required_resources || {}).map(([k, v]) => k + ": " + v).join(", ") || "none"],
          ["Arguments", (t.args_summary || []).length ? h("ul", { class: "args" }, t.args_summary.map((a) => h("li", {}, mono(a)))) : "none"],
          ["Submitted", MR.time(t.submit_time)], ["Started", MR.time(t.start_time)], ["Ended", MR.time(t.end_time)],
          ["Waited", MR.duration(t.wait_s)], ["Ran", MR.duration(t.run_s)],
        ];
        fill(out,
          h("dl", { class: "facts wide" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v === undefined || v === null || v === "" ? "—" : v)])),
          t.error_message ? section("Error", h("p", {}, h("strong", {}, t.error_type || "Error")), h("pre", { class: "traceback" }, t.error_message)) : null,
          MR.table("State changes", [
            { label: "State", value: (e) => MR.badge(e.state) },
            { label: "Time", value: (e) => MR.time(e.time) },
          ], t.events || []),
          !ended ? h("p", {}, confirmButton("Cancel task", "Confirm cancel", () => MR.post("/api/v0/tasks/" + taskId + "/cancel", {}))) : null);
      };
    },
  };

  /* ------------------------------------------------------------------ Actors */
  V.actors = {
    title: "Actors",
    render(main, arg, query) {
      const state = h("select", { id: "a-state", name: "state" }, h("option", { value: "" }, "any state"), ACTOR_STATES.map((s) => h("option", { value: s }, s)));
      const name = h("input", { id: "a-name", type: "text", placeholder: "actor or class name", autocomplete: "off" });
      state.value = query.get("state") || "";
      const form = h("form", { class: "filters", role: "search", "aria-label": "Filter actors" },
        h("label", { for: "a-state" }, "State"), state, h("label", { for: "a-name" }, "Name"), name, h("button", { type: "submit" }, "Filter"));
      const summary = h("p", { class: "muted", role: "status" });
      const out = region("Actor list");
      main.append(h("h2", {}, "Actors"), form, summary, out);
      form.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
      state.addEventListener("change", () => refresh());
      const only = query.get("actor_id");
      async function refresh() {
        const q = new URLSearchParams({ limit: 1000 });
        if (state.value) q.set("state", state.value);
        if (only) q.set("filter", "actor_id=" + only);
        const data = await MR.api("/api/v0/actors?" + q);
        const needle = name.value.trim().toLowerCase();
        const rows = needle ? data.actors.filter((a) => (a.name || "").toLowerCase().includes(needle) || (a.class_name || "").toLowerCase().includes(needle)) : data.actors;
        summary.textContent = rows.length + " of " + data.total + " actors";
        fill(out, MR.table("Actors", [
          { label: "Actor ID", value: (a) => mono(MR.short(a.actor_id, 12)) },
          { label: "Class", value: (a) => a.class_name || "—" },
          { label: "Name", value: (a) => a.name || "—", cls: "name" },
          { label: "Namespace", value: (a) => MR.short(a.namespace, 12) },
          { label: "State", value: (a) => MR.badge(a.state) },
          { label: "PID", value: (a) => String(a.pid || "—") },
          { label: "Node", value: (a) => mono(MR.short(a.node_id)) },
          { label: "Restarts", value: (a) => (a.num_restarts || 0) + " / " + (a.max_restarts === -1 ? "∞" : a.max_restarts || 0) },
          { label: "Death cause", value: (a) => a.death_cause ? String(a.death_cause).slice(0, 120) : "—" },
          { label: "Action", value: (a) => a.state === "DEAD" ? "—" :
            confirmButton("Kill", "Confirm kill", () => MR.post("/api/v0/actors/" + a.actor_id + "/kill", { no_restart: true })) },
        ], rows, { empty: "No actors.", rowAttrs: (a) => ({ "data-actor-id": a.actor_id, "data-name": a.name || "", "data-state": a.state }) }));
      }
      return refresh;
    },
  };

  /* ------------------------------------------------------------------ Objects */
  V.objects = {
    title: "Objects",
    render(main) {
      const sum = region("Object summary");
      const out = region("Object list");
      main.append(h("h2", {}, "Objects"), sum, out);
      return async () => {
        const [data, s] = await Promise.all([MR.api("/api/v0/objects?limit=1000"), MR.api("/api/v0/objects/summary")]);
        const stores = Object.entries(s.object_store || {});
        fill(sum, h("p", {}, MR.num(s.total_objects) + " objects owned by live processes, " + MR.bytes(s.total_size_bytes) + " in all. " +
          Object.entries(s.by_reference_type || {}).map(([k, v]) => v + " " + k).join(", ")),
          stores.map(([node, u]) => MR.meter("Object store of node " + MR.short(node), u.used, u.capacity, MR.bytes)));
        fill(out, MR.table("Objects (" + data.total + ")", [
          { label: "Object ID", value: (o) => mono(o.object_id) },
          { label: "Size", value: (o) => MR.bytes(o.object_size) },
          { label: "Owner (worker)", value: (o) => mono(MR.short(o.owner_worker_id, 12)) },
          { label: "Owner PID", value: (o) => String(o.pid || o.owner_pid || "—") },
          { label: "Reference type", value: (o) => Array.isArray(o.reference_type) ? o.reference_type.join(", ") : (o.reference_type || "—") },
          { label: "Location", value: (o) => o.location || "—" },
          { label: "Node", value: (o) => mono(MR.short(o.node_id)) },
          { label: "Task status", value: (o) => o.task_status || "—" },
        ], data.objects, { empty: "No objects are referenced right now." }));
      };
    },
  };

  /* ------------------------------------------------------------------ Placement groups */
  V["placement-groups"] = {
    title: "Placement groups",
    render(main) {
      const out = region("Placement groups");
      main.append(h("h2", {}, "Placement groups"), out);
      return async () => {
        const data = await MR.api("/api/v0/placement_groups");
        fill(out, data.note ? h("p", { class: "note" }, data.note) : null, MR.table("Placement groups", [
          { label: "ID", value: (p) => mono(p.placement_group_id) },
          { label: "Name", value: (p) => p.name || "—" },
          { label: "State", value: (p) => MR.badge(p.state) },
          { label: "Strategy", value: (p) => p.strategy || "—" },
          { label: "Bundles", value: (p) => JSON.stringify(p.bundles || []) },
        ], data.placement_groups, { empty: "No placement groups." }));
      };
    },
  };

  /* ------------------------------------------------------------------ Jobs */
  V.jobs = {
    title: "Jobs",
    render(main) {
      const subs = region("Submitted jobs");
      const drivers = region("Drivers");
      main.append(h("h2", {}, "Jobs"),
        h("p", { class: "muted" }, "Submit with ", mono("microray job submit --working-dir . -- python script.py"), "."),
        subs, drivers);
      return async () => {
        const data = await MR.api("/api/v0/jobs");
        fill(subs, MR.table("Submitted jobs", [
          { label: "Submission ID", value: (j) => link("#/job/" + encodeURIComponent(j.submission_id), j.submission_id), cls: "mono" },
          { label: "Status", value: (j) => MR.badge(j.status) },
          { label: "Entrypoint", value: (j) => mono(j.entrypoint) },
          { label: "Started", value: (j) => MR.time(j.start_time) },
          { label: "Ended", value: (j) => MR.time(j.end_time) },
          { label: "Exit code", value: (j) => j.driver_exit_code === null ? "—" : String(j.driver_exit_code) },
          { label: "Logs", value: (j) => link("#/job/" + encodeURIComponent(j.submission_id), "log, tasks, actors") },
          { label: "Action", value: (j) => ["RUNNING", "PENDING"].includes(j.status) ?
            confirmButton("Stop", "Confirm stop", () => MR.post("/api/jobs/" + j.submission_id + "/stop", {})) : "—" },
        ], data.submissions, { empty: "No job submitted through the dashboard yet.", rowAttrs: (j) => ({ "data-submission-id": j.submission_id }) }));
        fill(drivers, MR.table("Drivers connected to the cluster", [
          { label: "Job ID", value: (j) => link("#/job/" + j.job_id, j.job_id), cls: "mono" },
          { label: "Status", value: (j) => MR.badge(j.status) },
          { label: "Driver PID", value: (j) => String(j.driver_pid || "—") },
          { label: "Entrypoint", value: (j) => mono(j.entrypoint) },
          { label: "Namespace", value: (j) => MR.short(j.namespace, 12) },
          { label: "Started", value: (j) => MR.time(j.start_time) },
          { label: "Ended", value: (j) => MR.time(j.end_time) },
          { label: "Message", value: (j) => j.message || "—" },
        ], data.drivers, { empty: "No drivers." }));
      };
    },
  };

  /* ------------------------------------------------------------------ Logs */
  V.logs = {
    title: "Logs",
    render(main, file) {
      const list = region("Log files");
      const view = region("Log content");
      const lines = h("select", { id: "l-lines" }, [100, 500, 2000].map((n) => h("option", { value: n }, n + " lines")));
      const follow = h("input", { id: "l-follow", type: "checkbox", checked: true });
      main.append(h("h2", {}, "Logs"), h("p", { class: "muted" }, "Files of the head node's session folder."),
        h("div", { class: "logs" }, list, h("div", { class: "log-view" },
          h("div", { class: "filters" }, h("label", { for: "l-lines" }, "Tail"), lines,
            h("input", { type: "hidden" }), follow, h("label", { for: "l-follow" }, "follow")),
          view)));
      lines.addEventListener("change", () => refresh(true));
      let first = true;
      async function refresh(force) {
        const data = await MR.api("/api/v0/logs");
        const groups = {};
        for (const f of data.files) (groups[f.kind] = groups[f.kind] || []).push(f);
        fill(list, h("h3", {}, "Files"), Object.entries(groups).map(([kind, files]) =>
          h("div", {}, h("h4", {}, kind), h("ul", { class: "files" }, files.map((f) =>
            h("li", {}, h("a", { href: "#/logs/" + encodeURIComponent(f.name), "aria-current": f.name === file ? "page" : null }, f.name),
              " ", h("span", { class: "muted" }, MR.bytes(f.size))))))));
        if (!file) { fill(view, h("p", {}, "Pick a file.")); return; }
        if (!first && !force && !follow.checked) return;
        first = false;
        try {
          const t = await MR.api("/api/v0/logs/" + encodeURIComponent(file) + "?lines=" + lines.value);
          fill(view, h("h3", {}, file), h("pre", { class: "log", tabindex: "0", "aria-label": "last lines of " + file }, t.lines.join("\n") || "(empty)"));
        } catch (e) {
          fill(view, h("p", { class: "error" }, e.message));
        }
      }
      return refresh;
    },
  };

  /* ------------------------------------------------------------------ Plugins & config */
  V.plugins = {
    title: "Plugins & config",
    render(main) {
      const out = region("Plugins and config");
      main.append(h("h2", {}, "Plugins & config"), out);
      let done = false;
      return async () => {
        if (done) return; // static for the life of the cluster
        const data = await MR.api("/api/v0/plugins");
        done = true;
        fill(out,
          h("p", {}, "Cluster ", mono(data.cluster_id), "."),
          data.families.map((f) => section(f.family + ": " + f.selected,
            MR.table("Registered " + f.family + " backends", [
              { label: "Name", value: (b) => b.selected ? h("strong", {}, b.name) : b.name },
              { label: "Selected", value: (b) => b.selected ? "✔ selected" : "" },
              { label: "Source", value: (b) => b.source },
              { label: "Capabilities", value: (b) => (b.capabilities || []).join(", ") || "—" },
              { label: "Description", value: (b) => b.description || "—" },
            ], f.backends, { rowAttrs: (b) => ({ "data-family": f.family, "data-name": b.name, "data-selected": b.selected ? "1" : "0" }) }),
            Object.keys(f.options || {}).length ? h("p", {}, "Options: ", mono(JSON.stringify(f.options))) : null)),
          data.failed.length ? section("Plugins that failed to load", MR.table("Failed plugins", [
            { label: "Name", value: (x) => x.name }, { label: "Source", value: (x) => x.source }, { label: "Error", value: (x) => x.error },
          ], data.failed)) : null,
          section("Cluster config", MR.table("Config keys", [
            { label: "Key", value: (r) => mono(r[0]) },
            { label: "Value", value: (r) => mono(typeof r[1] === "object" ? JSON.stringify(r[1]) : String(r[1])) },
          ], Object.entries(data.config).sort())));
      };
    },
  };
})();
