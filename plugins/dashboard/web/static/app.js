/* microray dashboard: the router (#/view/arg?query) and the polling loop. */
"use strict";

(function () {
  const MR = window.MR;
  const h = MR.h;
  const POLL_MS = 2000;
  let current = null; // {refresh, gen}
  let gen = 0;
  let timer = null;

  MR.flash = function (message, isError) {
    const conn = document.getElementById("conn");
    conn.textContent = message;
    conn.classList.toggle("bad", !!isError);
  };

  function parse() {
    const raw = (window.location.hash || "#/overview").slice(2);
    const [path, qs] = raw.split("?");
    const [view, ...rest] = path.split("/");
    return { view: view || "overview", arg: rest.length ? decodeURIComponent(rest.join("/")) : "", query: new URLSearchParams(qs || "") };
  }

  async function tick(my) {
    if (!current || my !== gen) return;
    try {
      await current.refresh();
      if (my !== gen) return;
      MR.flash("live · updated " + new Date().toLocaleTimeString(), false);
    } catch (e) {
      if (my !== gen) return;
      MR.flash(e.status === 503 || e instanceof TypeError ? "cluster unreachable: " + e.message : "error: " + e.message, true);
    }
  }

  MR.refreshNow = function () { tick(gen); };

  function route() {
    const { view, arg, query } = parse();
    const def = MR.views[view] || MR.views.overview;
    gen += 1;
    clearInterval(timer);
    const main = document.getElementById("main");
    main.replaceChildren();
    document.title = def.title + " · microray dashboard";
    for (const a of document.querySelectorAll("nav.side a")) {
      const on = a.dataset.view === view || (view === "task" && a.dataset.view === "tasks") || (view === "job" && a.dataset.view === "jobs");
      if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    MR.flash("loading…", false); // "live" again once this view's first refresh landed
    const refresh = def.render(main, arg, query);
    current = { refresh };
    const my = gen;
    tick(my);
    timer = setInterval(() => tick(my), POLL_MS);
  }

  function showAuth() {
    const auth = document.getElementById("auth");
    auth.replaceChildren(MR.token()
      ? h("span", { class: "ok" }, "Actions enabled (session token held by this tab)")
      : h("span", { class: "warn" }, "Read-only: open the URL printed by microray.init() to enable actions"));
  }

  document.addEventListener("DOMContentLoaded", () => {
    MR.takeToken();
    showAuth();
    window.addEventListener("hashchange", route);
    route();
  });
})();
