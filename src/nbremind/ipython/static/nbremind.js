// nbremind's front end (an anywidget module): the live panel, the one-line status under a
// %%remind cell, and the Web Notifications of the "browser" channel.
//
// Every text comes from the kernel as plain data and reaches the page through textContent,
// element properties or setAttribute only: no markup is ever built from data.

const CHANGE_EVENTS = {
  panel: ["rows", "delta", "usage", "channels", "default_note", "summary", "muted", "jobs"],
  status: ["text", "state"],
};

/** Page-wide state shared by every nbremind widget (each loads its own copy of this module). */
function page() {
  if (!(window.__nbremindSeen instanceof Set)) window.__nbremindSeen = new Set();
  if (typeof window.__nbremindPage !== "string") window.__nbremindPage = randomId();
  return window;
}

function randomId() {
  return Math.random().toString(36).slice(2, 12);
}

function permission() {
  return typeof window.Notification === "function" ? window.Notification.permission : "unsupported";
}

/** Call `onChange` whenever the page's notification permission changes (the panel's button,
 * the site settings); returns a function that stops it. */
function watchPermission(onChange) {
  let status = null;
  let stopped = false;
  const handler = () => onChange(permission());
  try {
    navigator.permissions.query({ name: "notifications" }).then((found) => {
      if (stopped) return;
      status = found;
      status.addEventListener("change", handler);
    }, () => {});
  } catch (err) {
    // no Permissions API: the button still reports what requestPermission answers
  }
  return () => {
    stopped = true;
    if (status) status.removeEventListener("change", handler);
  };
}

/** Milliseconds the element a notification's click led to stays highlighted. */
const HIGHLIGHT_MS = 2000;

/** Whether the user is looking at this page: its tab is visible and has the focus. */
function watching() {
  return document.visibilityState === "visible" && document.hasFocus();
}

/** A "notify" message from the browser channel: one notification per id in this page, and
 * an answer to the kernel (through `say`) saying whether it was shown, or why not. While the
 * user watches the page and the message says `when_watching: "quiet"`, nothing is raised (the
 * status line shows it) and the answer says so (`watching: true`). A click on the
 * notification leads to the task (`goToTask`). */
function raiseNotification(msg, say) {
  if (!msg || msg.type !== "notify" || typeof msg.id !== "string") return;
  const seen = page().__nbremindSeen;
  if (seen.has(msg.id)) return;
  seen.add(msg.id);
  if (msg.when_watching === "quiet" && watching()) {
    say({ type: "shown", id: msg.id, ok: true, watching: true });
    return;
  }
  const allowed = permission();
  if (allowed !== "granted") {
    say({ type: "shown", id: msg.id, ok: false, permission: allowed });
    return;
  }
  const ids = [msg.task_id, msg.parent_id].filter((id) => typeof id === "string" && id !== "");
  try {
    const note = new window.Notification(String(msg.title ?? ""), {
      body: String(msg.body ?? ""),
      tag: msg.id,
    });
    // not cancelled: the browser's own default is to bring the tab forward too
    note.onclick = () => {
      if (typeof note.close === "function") note.close();
      goToTask(ids);
    };
    say({ type: "shown", id: msg.id, ok: true });
  } catch (err) {
    console.warn("nbremind: the browser refused a notification", err);
    say({ type: "shown", id: msg.id, ok: false, error: String(err) });
  }
}

// -- from a notification back to the work --------------------------------------------------

/** A "focus" message: a desktop toast of task `task_id` (inside `parent_id`) was clicked;
 * lead to the task as a click on its browser notification does (`goToTask`), once per
 * toast (`id`) in this page, however many widgets it has. */
function focusTask(msg) {
  if (!msg || msg.type !== "focus") return;
  const seen = page().__nbremindSeen;
  const key = `focus:${String(msg.id ?? "")}`;
  if (msg.id && seen.has(key)) return;
  if (msg.id) seen.add(key);
  goToTask([msg.task_id, msg.parent_id].filter((id) => typeof id === "string" && id !== ""));
}

/** The status-line elements drawn in this page, by task id (each view adds its own). */
function lineRegistry() {
  return (page().__nbremindLines ||= new Map());
}

/** The panel views drawn in this page: `{ root, ancestors(id) }` each. */
function panelRegistry() {
  return (page().__nbremindPanels ||= new Set());
}

/** Add `value` to the set at `key` of `map`; returns a function that takes it out again. */
function register(map, key, value) {
  if (!map.has(key)) map.set(key, new Set());
  map.get(key).add(value);
  return () => {
    const values = map.get(key);
    if (!values) return;
    values.delete(value);
    if (!values.size) map.delete(key);
  };
}

/** The element among `elements` to show: one in the page and laid out, else one in the page. */
function pick(elements) {
  const attached = [...elements].filter((el) => el.isConnected);
  return attached.find((el) => el.getClientRects().length > 0) || attached[0] || null;
}

/** The status line of the first of `ids` that has one in the page: a live view (registry),
 * else the plain line a cell's end left (`data-task-id`). */
function findLine(ids) {
  const lines = lineRegistry();
  for (const id of ids) {
    const found = pick(lines.get(id) || [])
      || pick(document.querySelectorAll(`.nbremind-status[data-task-id="${CSS.escape(id)}"]`));
    if (found) return found;
  }
  return null;
}

/** `ids` and the ancestors of their last one that a panel in the page lists. */
function withAncestors(ids) {
  const chain = [...ids];
  const last = chain[chain.length - 1];
  if (last === undefined) return chain;
  for (const panel of panelRegistry()) {
    for (const id of panel.ancestors(last)) if (!chain.includes(id)) chain.push(id);
  }
  return chain;
}

/** Outline `el` for HIGHLIGHT_MS (again from the start when it already is). */
function highlight(el) {
  const timers = (page().__nbremindHighlights ||= new WeakMap());
  clearTimeout(timers.get(el));
  el.classList.add("nbremind-highlight");
  timers.set(el, setTimeout(() => {
    el.classList.remove("nbremind-highlight");
    timers.delete(el);
  }, HIGHLIGHT_MS));
}

/** A click on a notification of task `ids[0]` (inside `ids[1]`): bring this tab forward and
 * scroll to the task's status line, or its parent's (or an ancestor's a panel lists), else to
 * a panel shown in the page; with neither, only the tab comes forward. */
function goToTask(ids) {
  try {
    window.focus();
  } catch (err) {
    // a page that may not take the focus still scrolls
  }
  const target = findLine(withAncestors(ids)) || pick([...panelRegistry()].map((p) => p.root));
  if (!target) return;
  target.scrollIntoView({ block: "center" });
  highlight(target);
}

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function listen(model, names, handler) {
  for (const name of names) model.on(`change:${name}`, handler);
  return () => {
    for (const name of names) model.off(`change:${name}`, handler);
  };
}

// -- the status line ----------------------------------------------------------------------

function renderStatus(model, el) {
  const line = make("div", "nbremind-status");
  const taskId = String(model.get("task_id") ?? "");
  if (taskId) line.dataset.taskId = taskId;
  const update = () => {
    line.textContent = String(model.get("text") ?? "");
    line.dataset.state = String(model.get("state") ?? "");
  };
  update();
  el.appendChild(line);
  const unlisten = listen(model, CHANGE_EVENTS.status, update);
  const unregister = taskId ? register(lineRegistry(), taskId, line) : () => {};
  return () => {
    unregister();
    unlisten();
    line.remove();
  };
}

// -- the panel ----------------------------------------------------------------------------

const COLUMNS = [
  ["name", "task"],
  ["state", "state"],
  ["progress", "progress"],
  ["count", "done"],
  ["rate", "rate"],
  ["elapsed", "elapsed"],
  ["eta", "ETA"],
  ["rss", "RSS"],
  ["cpu", "CPU"],
  ["gpu", "GPU"],
  ["notice", "last notice"],
];
const TEXT_CELLS = ["count", "rate", "eta", "gpu", "notice"];
/** Rows drawn at most (the first ones, in the kernel's order); a line says how many more
 * there are. Drawing 10,000 rows takes the page seconds and every update a long frame. */
const DRAW_LIMIT = 500;
/** Seconds without a heartbeat from the kernel after which a panel says it is not live. */
const STALE_AFTER = 15;
const STALE_NOTE = "A snapshot: the live panel needs a running kernel.";
const PERMISSION_TEXT = {
  granted: "Browser notifications: allowed",
  denied: "Browser notifications: blocked (allow them in the site settings)",
  default: "Allow browser notifications",
  unsupported: "This browser cannot show notifications",
};

/** ``1.2 s``, ``41 s``, ``12 min``, ``1 h 5 min``, ``2 d 3 h``: the kernel's
 * ``format_duration``, for the running time the page counts on between updates. */
function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return "?";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${seconds.toFixed(0)} s`;
  let minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    const sec = Math.floor(seconds % 60);
    return minutes >= 10 || !sec ? `${minutes} min` : `${minutes} min ${sec} s`;
  }
  let hours = Math.floor(minutes / 60);
  minutes %= 60;
  if (hours < 24) return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
  const days = Math.floor(hours / 24);
  hours %= 24;
  return hours ? `${days} d ${hours} h` : `${days} d`;
}

const JOB_COLUMNS = [
  ["name", "job"],
  ["schedule", "schedule"],
  ["next", "next run"],
  ["last", "last run"],
];

/** A job's next run, counted on from the kernel's ``next_at`` while the kernel lives:
 * ``in 2 h 10 min (02:00)``, ``due (02:00)`` once it passed; else the kernel's text. */
function nextRunText(job, clock) {
  if (!clock.live || typeof job.next_at !== "number") return String(job.next ?? "");
  const left = job.next_at - clock.now();
  const at = String(job.next_clock ?? "");
  return left > 0 ? `in ${formatDuration(left)} (${at})` : `due (${at})`;
}

/** A job's last run, ``succeeded 3 h ago``, counted on as :func:`nextRunText` is. */
function lastRunText(job, clock) {
  const state = job.last_state;
  if (!clock.live || typeof state !== "string" || typeof job.last_at !== "number") {
    return String(job.last ?? "");
  }
  const ago = formatDuration(Math.max(0, clock.now() - job.last_at));
  return state === "running" ? `running (started ${ago} ago)` : `${state} ${ago} ago`;
}

/** Which delta each rows array (a model's ``rows``) is at: the page applies deltas to the
 * array in place (never through model.set, which would send the rows back to the kernel
 * with the next save_changes), so a saved widget state holds the rows as last shown. */
function rowVersions() {
  return (page().__nbremindRowSeq ||= new WeakMap());
}

/** Make array `rows` hold `items` (in place: the model keeps the same array). */
function fill(rows, items) {
  rows.length = items.length;
  for (let k = 0; k < items.length; k++) rows[k] = items[k];
}

/** Apply the model's ``delta`` to its ``rows`` once (every view and initialize() call this;
 * the first applies it). Returns "applied", "current" or "gap" (a delta was missed: the
 * caller asks the kernel for a full state). */
function applyDelta(model) {
  const rows = model.get("rows");
  const delta = model.get("delta");
  if (!Array.isArray(rows) || !delta || typeof delta.seq !== "number") return "current";
  const versions = rowVersions();
  const at = versions.has(rows) ? versions.get(rows) : Number(model.get("rows_seq") || 0);
  if (delta.seq <= at) return "current";
  if (delta.reset) {
    fill(rows, delta.reset);
    versions.set(rows, delta.seq);
    return "applied";
  }
  if (delta.base !== at) return "gap";
  const adds = delta.add || [];
  if ((delta.remove && delta.remove.length) || adds.length) {
    // removed rows go; each added row goes right after the row of task `after` (null:
    // first), and one already there moves (so a delta applied twice changes nothing more)
    const gone = new Set(delta.remove || []);
    const following = new Map();
    for (const [after, row] of adds) {
      gone.add(row[0]);
      if (!following.has(after)) following.set(after, []);
      following.get(after).push(row);
    }
    const out = [];
    const put = (row) => {
      const stack = [row];
      while (stack.length) {
        const next = stack.pop();
        out.push(next);
        const more = following.get(next[0]);
        if (more) for (let k = more.length - 1; k >= 0; k--) stack.push(more[k]);
      }
    };
    for (const row of following.get(null) || []) put(row);
    for (const row of rows) if (!gone.has(row[0])) put(row);
    fill(rows, out);
  }
  if (delta.change && delta.change.length) {
    const byId = new Map(rows.map((row) => [row[0], row]));
    for (const entry of delta.change) {
      const row = byId.get(entry[0]);
      if (row === undefined) continue;
      for (let k = 1; k + 1 < entry.length; k += 2) row[entry[k]] = entry[k + 1];
    }
  }
  versions.set(rows, delta.seq);
  return "applied";
}

/** Keep a model's rows up to date from its deltas, asking for a full state after a gap. */
function followDeltas(model, say) {
  let asked = -1;
  const onDelta = () => {
    if (applyDelta(model) === "gap") {
      const seq = Number(model.get("delta").seq);
      if (seq > asked) {
        asked = seq + 8;  // one request per few updates while the full state is on its way
        say({ type: "resync" });
      }
    }
  };
  onDelta();
  model.on("change:delta", onDelta);
  return () => model.off("change:delta", onDelta);
}

function makeRow() {
  const tr = make("tr", "nbremind-task");
  const cells = {};
  for (const [key] of COLUMNS) {
    const td = make("td", `nbremind-col-${key}`);
    if (key === "progress") {
      cells.progress = make("progress", "nbremind-progress");
      td.appendChild(cells.progress);
    } else {
      td.classList.add(`nbremind-${key}`);
      cells[key] = td;
    }
    tr.appendChild(td);
  }
  return { tr, cells, shown: {} };
}

function setText(row, key, value) {
  const text = value === null || value === undefined ? "" : String(value);
  if (row.shown[key] !== text) {
    row.shown[key] = text;
    row.cells[key].textContent = text;
  }
}

function setAttribute(row, key, value, apply) {
  const text = String(value ?? "");
  if (row.shown[`@${key}`] !== text) {
    row.shown[`@${key}`] = text;
    apply(text);
  }
}

/** The ETA cell: the kernel's ETA, then the usual duration of a running task that has one
 * (``22 min · usually 25 min``; the ETA counts down from it until progress gives one). */
function etaText(data, at) {
  const eta = data[at.eta] || "";
  const usual = (at.usual === undefined ? "" : data[at.usual]) || "";
  return eta && usual ? `${eta} · ${usual}` : eta || usual;
}

function updateRow(row, data, at, clock) {
  const { tr, cells } = row;
  setAttribute(row, "state", data[at.state], (v) => { tr.dataset.state = v; });
  setAttribute(row, "depth", data[at.depth] ?? 0, (v) => {
    tr.dataset.depth = v;
    tr.style.setProperty("--nbremind-depth", v);
  });
  setAttribute(row, "title", data[at.name], (v) => { cells.name.title = v; });
  setAttribute(row, "notice-title", data[at.notice], (v) => { cells.notice.title = v; });
  setText(row, "name", data[at.name]);
  setText(row, "state", data[at.state_text]);
  for (const key of TEXT_CELLS) {
    setText(row, key, key === "eta" ? etaText(data, at) : data[at[key]]);
  }
  const running = data[at.state] === "running";
  const started = data[at.started];
  if (running && clock.live && typeof started === "number") {
    const text = formatDuration(Math.max(0, clock.now() - started));
    data[at.elapsed] = text;  // a saved widget state keeps the time last shown
    setText(row, "elapsed", text);
  } else {
    setText(row, "elapsed", data[at.elapsed]);
  }
  // a running row's memory and CPU are the process's (the panel's usage)
  const usage = running ? clock.usage : null;
  setText(row, "rss", data[at.rss] || (usage ? usage[0] : ""));
  setText(row, "cpu", data[at.cpu] || (usage ? usage[1] : ""));
  const value = data[at.value];
  const max = data[at.max];
  setAttribute(row, "progress", `${value}/${max}`, () => {
    const bar = cells.progress;
    if (typeof max === "number" && max > 0 && typeof value === "number") {
      bar.max = max;
      bar.value = Math.min(value, max);
    } else {
      bar.removeAttribute("value");
      bar.removeAttribute("max");
    }
  });
}

function renderPanel(model, el, say) {
  const root = make("div", "nbremind-panel");

  const header = make("div", "nbremind-header");
  header.append(make("span", "nbremind-title", "nbremind"), make("span", "nbremind-summary"));

  const controls = make("div", "nbremind-controls");
  const muteLabel = make("label", "nbremind-mute-label");
  const mute = make("input", "nbremind-mute");
  mute.type = "checkbox";
  muteLabel.append(mute, document.createTextNode(" mute notifications"));
  const ask = make("button", "nbremind-permission");
  ask.type = "button";
  controls.append(muteLabel, ask);

  const channels = make("ul", "nbremind-channels");
  const defaults = make("div", "nbremind-default");
  const stale = make("div", "nbremind-stale");
  stale.hidden = true;

  const table = make("table", "nbremind-tasks");
  const head = make("tr");
  for (const [key, label] of COLUMNS) head.appendChild(make("th", `nbremind-col-${key}`, label));
  const thead = make("thead");
  thead.appendChild(head);
  const tbody = make("tbody");
  table.append(thead, tbody);
  const empty = make("div", "nbremind-empty",
    "No tasks yet: run a %%remind cell, a remind() block or a track() loop.");
  const more = make("div", "nbremind-more");
  more.hidden = true;
  const scroll = make("div", "nbremind-scroll");
  scroll.append(table, more, empty);

  // the upcoming jobs of the settings files (hidden when they define none)
  const jobs = make("div", "nbremind-jobs");
  jobs.hidden = true;
  const jobTable = make("table", "nbremind-jobs-table");
  const jobHead = make("tr");
  for (const [key, label] of JOB_COLUMNS) {
    jobHead.appendChild(make("th", `nbremind-job-${key}`, label));
  }
  const jobThead = make("thead");
  jobThead.appendChild(jobHead);
  const jobBody = make("tbody");
  jobTable.append(jobThead, jobBody);
  const jobsMore = make("div", "nbremind-jobs-more");
  jobsMore.hidden = true;
  jobs.append(make("div", "nbremind-jobs-title", "Upcoming jobs"), jobTable, jobsMore);

  root.append(header, stale, controls, channels, defaults, scroll, jobs);
  el.appendChild(root);

  const rows = new Map();
  let order = [];
  // the kernel's clock as this page reads it: its time at the last update plus what passed
  let offset = 0;
  const clock = {
    live: false,
    usage: null,
    now: () => Date.now() / 1000 + offset,
  };
  const onClock = () => {
    const value = Number(model.get("clock"));
    if (value > 0) offset = value - Date.now() / 1000;
  };

  function updateRows() {
    const fields = model.get("fields") || [];
    const at = Object.fromEntries(fields.map((name, i) => [name, i]));
    const all = model.get("rows") || [];
    const data = all.length > DRAW_LIMIT ? all.slice(0, DRAW_LIMIT) : all;
    clock.usage = model.get("usage") || null;
    const ids = data.map((r) => String(r[at.id]));
    const alive = new Set(ids);
    let reorder = ids.length !== order.length;
    data.forEach((r, i) => {
      const id = ids[i];
      let row = rows.get(id);
      if (row === undefined) {
        row = makeRow();
        row.tr.dataset.taskId = id;
        rows.set(id, row);
        reorder = true;
      } else if (!reorder && order[i] !== id) {
        reorder = true;
      }
      updateRow(row, r, at, clock);
    });
    for (const [id, row] of rows) {
      if (!alive.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    if (reorder) {
      const fragment = document.createDocumentFragment();
      for (const id of ids) fragment.appendChild(rows.get(id).tr);
      tbody.appendChild(fragment);
      order = ids;
    }
    empty.hidden = ids.length > 0;
    table.hidden = ids.length === 0;
    // the GPU column only where a row has GPU figures (NVML answers and a task uses a GPU)
    table.classList.toggle("nbremind-no-gpu", !data.some((r) => r[at.gpu]));
    const hidden = all.length - data.length;
    more.hidden = hidden === 0;
    more.textContent = hidden ? `… and ${hidden} more (the first ${data.length} are shown)` : "";
  }
  const onDelta = () => {
    if (applyDelta(model) !== "gap") updateRows();
  };

  const jobRows = [];
  function updateJobs() {
    const state = model.get("jobs") || {};
    const list = Array.isArray(state.rows) ? state.rows : [];
    while (jobRows.length > list.length) jobRows.pop().tr.remove();
    while (jobRows.length < list.length) {
      const tr = make("tr", "nbremind-job");
      const cells = {};
      for (const [key] of JOB_COLUMNS) {
        cells[key] = make("td", `nbremind-job-${key}`);
        tr.appendChild(cells[key]);
      }
      jobBody.appendChild(tr);
      jobRows.push({ tr, cells, shown: {} });
    }
    list.forEach((job, i) => {
      const row = jobRows[i];
      setAttribute(row, "name", job.name, (v) => { row.tr.dataset.job = v; });
      setAttribute(row, "last-state", job.last_state, (v) => { row.tr.dataset.lastState = v; });
      setText(row, "name", job.name);
      setText(row, "schedule", job.schedule);
      setText(row, "next", nextRunText(job, clock));
      setText(row, "last", lastRunText(job, clock));
    });
    const hidden = Number(state.more) || 0;
    jobsMore.hidden = hidden === 0;
    jobsMore.textContent = hidden ? `… and ${hidden} more` : "";
    jobs.hidden = list.length === 0;
  }

  function updateChannels() {
    const items = (model.get("channels") || []).map(([name, state, ok]) => {
      const li = make("li", "nbremind-channel", `${name}: ${state}`);
      li.dataset.channel = String(name);
      li.dataset.ok = ok ? "true" : "false";
      return li;
    });
    channels.replaceChildren(...items);
  }

  function updateAsk() {
    const state = permission();
    ask.dataset.permission = state;
    ask.textContent = PERMISSION_TEXT[state] || PERMISSION_TEXT.default;
  }

  function updateHeader() {
    header.querySelector(".nbremind-summary").textContent = String(model.get("summary") ?? "");
    defaults.textContent = String(model.get("default_note") ?? "");
    mute.checked = Boolean(model.get("muted"));
  }

  mute.addEventListener("change", () => {
    model.set("muted", mute.checked);
    model.save_changes();
  });
  ask.addEventListener("click", async () => {
    if (typeof window.Notification === "function") {
      ask.dataset.permission = "asking";
      ask.textContent = "Waiting for the browser's answer…";
      try {
        const answer = await window.Notification.requestPermission();
        updateAsk();
        say({ type: "permission", permission: answer });
        return;
      } catch (err) {
        console.warn("nbremind: asking for notification permission failed", err);
      }
    }
    updateAsk();
  });
  const unwatch = watchPermission(updateAsk);

  // what a notification's click may lead to: this panel, and the tasks its rows nest in
  const entry = {
    root,
    ancestors(id) {
      const fields = model.get("fields") || [];
      const at = Object.fromEntries(fields.map((name, i) => [name, i]));
      const all = model.get("rows") || [];
      let k = all.findIndex((r) => String(r[at.id]) === id);
      if (k < 0) return [];
      const found = [];
      let depth = Number(all[k][at.depth] || 0);
      for (k -= 1; k >= 0 && depth > 0; k--) {
        const d = Number(all[k][at.depth] || 0);
        if (d < depth) {
          found.push(String(all[k][at.id]));
          depth = d;
        }
      }
      return found;
    },
  };
  panelRegistry().add(entry);

  // Live while the kernel's heartbeat (`beat`, its clock's seconds, bumped every few seconds)
  // is recent or was just seen changing; else this is a saved state with no kernel behind it.
  let beatSeen = -Infinity;
  function updateLive() {
    const age = Date.now() / 1000 - Number(model.get("beat") || 0);
    const live = Math.abs(age) < STALE_AFTER || performance.now() - beatSeen < STALE_AFTER * 1000;
    root.dataset.live = live ? "true" : "false";
    stale.textContent = String(model.get("stale_note") || STALE_NOTE);
    stale.hidden = live;
    if (clock.live !== live || live) {
      clock.live = live;
      updateRows();  // running times count on while the kernel lives
      updateJobs();
    }
  }
  const onBeat = () => {
    beatSeen = performance.now();
    updateLive();
  };
  const liveTimer = setInterval(updateLive, 1000);

  onClock();
  applyDelta(model);
  updateLive();
  updateRows();
  updateChannels();
  updateJobs();
  updateHeader();
  updateAsk();
  const unlisten = [
    listen(model, ["clock"], onClock),
    listen(model, ["rows", "usage"], updateRows),
    listen(model, ["delta"], onDelta),
    listen(model, ["channels"], updateChannels),
    listen(model, ["jobs"], updateJobs),
    listen(model, ["summary", "default_note", "muted"], updateHeader),
    listen(model, ["beat"], onBeat),
  ];
  return () => {
    clearInterval(liveTimer);
    for (const off of unlisten) off();
    unwatch();
    panelRegistry().delete(entry);
    root.remove();
  };
}

// -- anywidget entry points ---------------------------------------------------------------

/** How this page talks to the kernel about one model: its key and a safe send. (anywidget
 * hands initialize() and render() different proxies of a model, so a view may get a key of
 * its own; the kernel applies a view's permission news to the whole widget.) */
function link(model) {
  const links = page().__nbremindLinks ||= new WeakMap();
  let found = links.get(model);
  if (found === undefined) {
    const key = randomId();
    const say = (content) => {
      try {
        model.send({ ...content, view: key, page: page().__nbremindPage });
      } catch (err) {
        // the kernel went away: nothing to tell
      }
    };
    found = { key, say };
    links.set(model, found);
  }
  return found;
}

/** Once per model in a page: tell the kernel this page can show notifications (hello, and
 * bye when the model or the page goes), and raise the browser channel's notifications. A
 * model keeps listening while none of its views is shown (a status line a cell's end left
 * as plain text). */
function initialize({ model }) {
  const { say } = link(model);
  const onMessage = (msg) => {
    if (msg && msg.type === "focus") focusTask(msg);
    else raiseNotification(msg, say);
  };
  model.on("msg:custom", onMessage);
  say({ type: "hello", permission: permission() });
  const onHide = () => say({ type: "bye" });
  const onShow = (event) => {
    if (event.persisted) say({ type: "hello", permission: permission() });
  };
  window.addEventListener("pagehide", onHide);
  window.addEventListener("pageshow", onShow);
  const unwatch = watchPermission((value) => say({ type: "permission", permission: value }));
  // the panel's rows follow its deltas even while no view shows it (a saved state holds them)
  const unfollow = model.get("view") === "panel" && typeof followDeltas === "function"
    ? followDeltas(model, say) : () => {};
  return () => {
    unfollow();
    window.removeEventListener("pagehide", onHide);
    window.removeEventListener("pageshow", onShow);
    unwatch();
    model.off("msg:custom", onMessage);
    say({ type: "bye" });
  };
}

/** Once per view: draw it. (A status line's copy of this module leaves the panel's section
 * out, so `renderPanel` is looked up, not assumed.) */
function render({ model, el }) {
  const { say } = link(model);
  if (model.get("view") === "panel" && typeof renderPanel === "function") {
    return renderPanel(model, el, say);
  }
  return renderStatus(model, el);
}

export default { initialize, render };
