// sb.topology(): services, exchanges, queues and bindings as a graph; dots run along the
// edges for the messages counted between two snapshots. Python sends at most a few snapshots
// a second, whatever the message rate, and the dots on screen are capped, so a burst only
// makes the counts grow.

const SVG = "http://www.w3.org/2000/svg";
const COLUMN = { exchange: 10, queue: 350, service: 690 };
const WIDTH = 230;
const GAP = 14;
const MAX_DOTS = 240; // on screen at once
const DOTS_PER_EDGE = 6; // per snapshot
const TRAVEL_MS = 700;

function make(tag, attrs, parent) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, value, cls) {
  const node = make("text", { x, y, class: cls || "" }, parent);
  node.textContent = value;
  return node;
}

function byQueue(snapshot) {
  // Services in the order of the queues they consume, so that edges cross less.
  const order = new Map((snapshot.queues || []).map((q, i) => [q.name, i]));
  const first = (s) => Math.min(...(s.queues || []).map((q) => order.get(q) ?? 1e9), 1e9);
  return [...(snapshot.services || [])].sort((a, b) => first(a) - first(b));
}

function fit(value, length) {
  return value.length > length ? `${value.slice(0, length - 1)}…` : value;
}

function layout(snapshot) {
  const nodes = new Map();
  const place = (kind, items, height) => {
    let y = 10;
    for (const item of items) {
      const h = height(item);
      nodes.set(`${kind}:${item.name}`, { kind, item, x: COLUMN[kind], y, h });
      y += h + GAP;
    }
    return y;
  };
  const bottom = Math.max(
    place("exchange", snapshot.exchanges || [], () => 38),
    place("queue", snapshot.queues || [], () => 52),
    place("service", byQueue(snapshot), (s) => 24 + 14 * Math.max(1, s.entrypoints.length)),
  );
  return { nodes, height: bottom + 10 };
}

function edges(snapshot, nodes) {
  const found = [];
  const add = (from, to, kind, label) => {
    const a = nodes.get(from), b = nodes.get(to);
    if (a && b) found.push({ from, to, kind, label, a, b });
  };
  for (const b of snapshot.bindings || []) add(`exchange:${b.exchange}`, `queue:${b.queue}`, "bind", b.routing_key);
  for (const s of snapshot.services || []) {
    for (const q of s.queues || []) add(`queue:${q}`, `service:${s.name}`, "consume", "");
    for (const e of s.publishes || []) add(`service:${s.name}`, `exchange:${e}`, "publish", "");
  }
  return found;
}

function path(edge) {
  const { a, b } = edge;
  if (edge.kind === "publish") { // right to left, below the columns' middle: a loop back
    const x1 = a.x, y1 = a.y + a.h / 2, x2 = b.x + WIDTH / 2, y2 = b.y;
    return `M${x1},${y1} C${x1 - 120},${y1 - 60} ${x2 + 40},${y2 - 50} ${x2},${y2}`;
  }
  const x1 = a.x + WIDTH, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2;
  const mid = (x1 + x2) / 2;
  return `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
}

function flow(edge, now, before) {
  // How many messages went along an edge since the last snapshot, from counters that grow.
  const grew = (kind, name, key) => {
    const find = (snap) => (snap[kind] || []).find((x) => x.name === name);
    const n = find(now), p = before && find(before);
    return n && p ? Math.max(0, (n[key] || 0) - (p[key] || 0)) : 0;
  };
  const name = (id) => id.slice(id.indexOf(":") + 1);
  if (edge.kind === "bind") return grew("queues", name(edge.to), "received");
  if (edge.kind === "consume") return grew("queues", name(edge.from), "delivered");
  return grew("exchanges", name(edge.to), "published");
}

function drawNode(layer, id, node, selected, onClick) {
  const outside = node.kind === "service" && !node.item.local ? " outside" : "";
  const g = make("g", { class: `node ${node.kind}${outside}${id === selected ? " selected" : ""}`,
    transform: `translate(${node.x},${node.y})`, "data-id": id }, layer);
  make("rect", { width: WIDTH, height: node.h, rx: 6 }, g);
  const item = node.item;
  make("title", {}, g).textContent = item.name; // the whole name, where the box cuts it
  if (node.kind === "exchange") {
    text(g, 8, 16, fit(item.name, 28), "title");
    text(g, 8, 30, `${item.type} · ${item.published} published`, "sub");
  } else if (node.kind === "queue") {
    text(g, 8, 16, fit(item.name, 28), "title");
    text(g, 8, 30, `ready ${item.ready} · unacked ${item.unacked} · consumers ${item.consumers}`, "sub");
    const bar = Math.min(WIDTH - 16, Math.log10(1 + item.ready) * 50);
    make("rect", { x: 8, y: 38, width: bar, height: 6, class: item.consumers ? "depth" : "depth idle" }, g);
  } else {
    const where = item.local ? (item.busy_workers ? ` · ${item.busy_workers} busy` : "") : " · outside";
    text(g, 8, 16, `${fit(item.name, 20)}${where}`, "title");
    item.entrypoints.forEach((e, i) => text(g, 14, 31 + 14 * i, fit(`${e.kind.toLowerCase()} ${e.name}${e.route ? " " + e.route : ""}`, 30), "sub"));
  }
  g.addEventListener("click", () => onClick(id));
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "sandbox-topology";
  const source = document.createElement("div");
  source.className = "topology-source";
  const notice = document.createElement("div");
  notice.className = "topology-notice";
  const width = COLUMN.service + WIDTH + 10;
  const svg = make("svg", { width: "100%", style: `max-width: ${width}px` }); // scales down to fit
  const details = document.createElement("div");
  details.className = "topology-details";
  root.append(source, notice, svg, details);
  el.appendChild(root);

  let previous = null;
  let syncs = 0;
  let launched = 0; // dots ever started: data-launched, with data-syncs, for tests
  let dots = [];
  let dotLayer = null;
  let frame = null;

  const select = (id) => { model.set("selected", id); model.save_changes(); draw(); };

  function draw() {
    const snapshot = model.get("snapshot") || {};
    source.textContent = snapshot.source ? `from the ${snapshot.source}` : "";
    notice.textContent = snapshot.notice || "";
    const { nodes, height } = layout(snapshot);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.replaceChildren();
    const edgeLayer = make("g", {}, svg);
    const found = edges(snapshot, nodes);
    for (const edge of found) {
      edge.path = make("path", { d: path(edge), class: `edge ${edge.kind}` }, edgeLayer);
      if (edge.label) {
        const mid = edge.path.getPointAtLength(edge.path.getTotalLength() / 2);
        text(edgeLayer, mid.x, mid.y - 4, fit(edge.label, 16), "edge-label");
      }
    }
    const nodeLayer = make("g", {}, svg);
    const selected = model.get("selected");
    for (const [id, node] of nodes) drawNode(nodeLayer, id, node, selected, select);
    dotLayer = make("g", {}, svg);
    for (const dot of dots) dotLayer.appendChild(dot.circle);
    return found;
  }

  function launch(found, snapshot) {
    const start = performance.now();
    for (const edge of found) {
      const count = Math.min(flow(edge, snapshot, previous), DOTS_PER_EDGE);
      for (let i = 0; i < count && dots.length < MAX_DOTS; i++) {
        const circle = make("circle", { r: 3.5, class: "dot" }, dotLayer);
        dots.push({ circle, path: edge.path, length: edge.path.getTotalLength(), start: start + i * 90 });
        launched += 1;
      }
    }
    if (dots.length && frame === null) frame = requestAnimationFrame(animate);
  }

  function animate(now) {
    dots = dots.filter((dot) => {
      const t = (now - dot.start) / TRAVEL_MS;
      if (t > 1 || !dot.path.isConnected) { dot.circle.remove(); return false; }
      const p = dot.path.getPointAtLength(Math.max(0, t) * dot.length);
      dot.circle.setAttribute("cx", p.x);
      dot.circle.setAttribute("cy", p.y);
      return true;
    });
    frame = dots.length ? requestAnimationFrame(animate) : null;
  }

  function update() {
    syncs += 1;
    root.dataset.syncs = String(syncs);
    const snapshot = model.get("snapshot") || {};
    const found = draw();
    // A redraw drops the old paths: dots still travelling follow the new ones.
    for (const dot of dots) {
      const again = found.find((e) => e.path.getAttribute("d") === dot.path.getAttribute("d"));
      if (again) { dot.path = again.path; }
    }
    launch(found, snapshot);
    root.dataset.launched = String(launched);
    previous = snapshot;
  }

  const showDetails = () => { details.textContent = model.get("details") || "Click a queue, exchange or service for its details."; };
  model.on("change:snapshot", update);
  model.on("change:details", showDetails);
  model.on("change:selected", draw);
  previous = model.get("snapshot");
  draw();
  showDetails();
  return () => {
    model.off("change:snapshot", update);
    model.off("change:details", showDetails);
    model.off("change:selected", draw);
    if (frame !== null) cancelAnimationFrame(frame);
  };
}

export default { render };
