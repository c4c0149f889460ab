// The gallery page: search a hotel, show its gallery in stored order, CAM on click.
// Plain DOM, no framework, no build step. Text from Redis goes in through
// textContent only (hotel and image ids are data, never markup).
"use strict";

const params = new URLSearchParams(location.search);
// ?namespace= pins a namespace (e.g. a replay being checked); else the server's choice.
const pinnedNamespace = params.get("namespace");
const EAGER_IMAGES = 24; // first rows load at once; the rest when scrolled near (big galleries)

const $ = (id) => document.getElementById(id);
const els = {
  form: $("search-form"), input: $("hotel-search"), suggestions: $("suggestions"),
  namespace: $("namespace"), hotel: $("hotel"), title: $("hotel-title"), meta: $("hotel-meta"),
  status: $("status"), gallery: $("gallery"),
  dialog: $("cam-dialog"), camArea: $("cam-area"), camImage: $("cam-image"), camOriginal: $("cam-original"),
  camCaption: $("cam-caption"), camFrame: document.querySelector(".cam-frame"),
};
let current = null; // {hotelId, doc}
// Review mode: the bearer token lives in this tab's sessionStorage only, and is sent in the
// Authorization header (never in a URL, never as a cookie).
const TOKEN_KEY = "galleryrank.reviewToken";
let reviewer = null; // {reviewer, role, areas}
let camImage = null; // image shown in the dialog

function apiUrl(path, extra = {}) {
  const q = new URLSearchParams(extra);
  if (pinnedNamespace) q.set("namespace", pinnedNamespace);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

function setStatus(text, isError = false) {
  els.status.textContent = text;
  els.status.classList.toggle("error", isError);
  els.status.hidden = !text;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function safeImageUrl(url) {
  try {
    const u = new URL(url, location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : "";
  } catch { return ""; }
}

// ---- search box -----------------------------------------------------------
let searchTimer = 0;
let searchSeq = 0;

async function suggest(prefix) {
  const seq = ++searchSeq;
  try {
    const resp = await fetch(apiUrl("/hotels", { q: prefix, limit: 20 }));
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const body = await resp.json();
    if (seq !== searchSeq) return; // a newer keystroke won
    els.namespace.textContent = `namespace: ${body.namespace}`;
    showSuggestions(body.hotels, body.truncated);
  } catch (err) {
    if (seq === searchSeq) setStatus(`Hotel search failed: ${err.message}`, true);
  }
}

function showSuggestions(hotels, truncated) {
  els.suggestions.replaceChildren();
  for (const id of hotels) {
    const li = el("li", "", id);
    li.setAttribute("role", "option");
    li.dataset.hotelId = id;
    li.addEventListener("mousedown", (ev) => { ev.preventDefault(); pick(id); });
    els.suggestions.append(li);
  }
  if (truncated) els.suggestions.append(el("li", "more", "… type more to narrow"));
  els.suggestions.hidden = hotels.length === 0;
}

function pick(hotelId) {
  clearTimeout(searchTimer); // a pending or in-flight search must not reopen the list
  searchSeq++;
  els.input.value = hotelId;
  els.suggestions.hidden = true;
  loadGallery(hotelId);
}

els.input.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => suggest(els.input.value.trim()), 120);
});
els.input.addEventListener("focus", () => suggest(els.input.value.trim()));
els.input.addEventListener("blur", () => { els.suggestions.hidden = true; });
els.input.addEventListener("keydown", (ev) => {
  const items = [...els.suggestions.querySelectorAll("li[data-hotel-id]")];
  if (!items.length || els.suggestions.hidden) return;
  const at = items.findIndex((li) => li.getAttribute("aria-selected") === "true");
  if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
    ev.preventDefault();
    const next = ev.key === "ArrowDown" ? Math.min(at + 1, items.length - 1) : Math.max(at - 1, 0);
    items.forEach((li, i) => li.setAttribute("aria-selected", String(i === next)));
  } else if (ev.key === "Enter" && at >= 0) {
    ev.preventDefault();
    pick(items[at].dataset.hotelId);
  }
});
els.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = els.input.value.trim();
  if (id) pick(id);
});

// ---- gallery ----------------------------------------------------------------
async function loadGallery(hotelId) {
  $("hotel-list").hidden = true; // the landing list gives way to the gallery
  setStatus(`Loading ${hotelId}…`);
  const url = new URL(location.href);
  url.searchParams.set("hotel", hotelId);
  history.replaceState(null, "", url);
  let resp;
  try {
    resp = await fetch(apiUrl(`/hotels/${encodeURIComponent(hotelId)}/gallery`));
  } catch (err) {
    return showError(`Could not reach the API: ${err.message}`);
  }
  if (resp.status === 404) return showError(`No gallery for hotel “${hotelId}”.`);
  if (!resp.ok) return showError(`The API answered HTTP ${resp.status}.`);
  const doc = await resp.json();
  const ns = resp.headers.get("X-Galleryrank-Namespace");
  if (ns) els.namespace.textContent = `namespace: ${ns}`;
  current = { hotelId, doc };
  renderGallery(doc);
  if (token()) startReview(); // the hotel's areas for the review panels
}

function showError(text) {
  current = null;
  els.gallery.replaceChildren();
  els.hotel.hidden = true;
  setStatus(text, true);
}

function renderGallery(doc) {
  const images = doc.images || [];
  els.title.textContent = `Hotel ${doc.hotel_id}`;
  const updated = doc.updated_at ? new Date(doc.updated_at).toLocaleString() : "—";
  els.meta.textContent = `${images.length} photo${images.length === 1 ? "" : "s"} · model ${doc.model_version || "—"} · updated ${updated}`;
  const missing = Array.isArray(doc.pinned_missing) ? doc.pinned_missing : [];
  if (missing.length) els.meta.textContent += ` · pinned but not shown: ${missing.join(", ")}`;
  els.hotel.hidden = false;
  setStatus(images.length ? "" : "This hotel has no photos.");
  els.gallery.replaceChildren(...images.map((img, i) => card(img, i + 1)));
}

function card(img, position) {
  const li = el("li", "card");
  li.tabIndex = 0;
  li.dataset.imageId = img.image_id;
  li.dataset.area = img.area;
  li.dataset.position = String(position);
  // Why this position (additive field of the gallery document; older documents have none).
  const reason = typeof img.reason === "string" ? img.reason : "";
  if (reason) li.dataset.reason = reason;
  if (reason.startsWith("pinned")) li.classList.add("pinned");
  li.title = reason ? `#${position} ${reason} · ${img.image_id}: click for the CAM` : `${img.image_id}: click for the CAM`;

  const thumb = el("img", "thumb");
  thumb.alt = `${img.area} photo ${img.image_id}`;
  thumb.decoding = "async";
  if (position > EAGER_IMAGES) thumb.loading = "lazy";
  thumb.src = safeImageUrl(img.url);

  const info = el("div", "info");
  info.append(el("span", "area", img.area.replace(/_/g, " ")));
  const score = el("span", "aesthetic", Number(img.aesthetic).toFixed(2));
  score.append(el("small", "", " / 10"));
  score.title = "aesthetic score (mean of the predicted 1–10 distribution)";
  info.append(score);

  const conf = el("div", "confidence", `area confidence ${(100 * img.area_confidence).toFixed(0)} %`);
  const bar = el("div", "bar");
  const fill = el("div");
  fill.style.width = `${Math.max(0, Math.min(1, img.area_confidence)) * 100}%`;
  bar.append(fill);
  conf.append(bar);

  li.append(thumb, el("span", "position", `#${position}`), info, conf);
  if (reason) {
    // Shown on hover/focus (CSS) and on a tap of the "why" button (touch screens have no hover).
    const why = el("button", "why", "why?");
    why.type = "button";
    why.setAttribute("aria-label", `why #${position}`);
    why.setAttribute("aria-expanded", "false");
    const text = el("span", "reason", reason);
    text.setAttribute("role", "note");
    why.addEventListener("click", (ev) => {
      ev.stopPropagation(); // a tap explains, it does not open the CAM
      const open = li.classList.toggle("explained");
      why.setAttribute("aria-expanded", String(open));
    });
    why.addEventListener("keydown", (ev) => ev.stopPropagation());
    li.append(why, text);
  }
  if (reviewer) li.append(reviewPanel(img, position));
  li.addEventListener("click", () => openCam(img));
  li.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); openCam(img); } });
  return li;
}

// ---- review mode -------------------------------------------------------------
function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function reviewFetch(path, body, extra = {}) {
  const init = { headers: { Authorization: `Bearer ${token()}` }, cache: "no-store" };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(apiUrl(path, extra), init);
  const answer = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(`${resp.status} ${answer.error || ""}: ${answer.detail || ""}`);
  return answer;
}

async function startReview() {
  if (!token()) return;
  try {
    reviewer = await reviewFetch("/review/me", undefined, current ? { hotel: current.hotelId } : {});
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    reviewer = null;
    setStatus(`Review mode refused: ${err.message}`, true);
  }
  showReviewer();
  if (current) renderGallery(current.doc);
}

function showReviewer() {
  $("review-who").hidden = !reviewer;
  $("review-stop").hidden = !reviewer;
  $("review-token").hidden = !!reviewer;
  $("review-start").hidden = !!reviewer;
  $("review-who").textContent = reviewer ? `reviewing as ${reviewer.reviewer} (${reviewer.role})` : "";
  document.body.classList.toggle("reviewing", !!reviewer);
}

$("review-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = $("review-token").value.trim();
  $("review-token").value = "";
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  startReview();
});
$("review-stop").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  reviewer = null;
  showReviewer();
  if (current) renderGallery(current.doc);
});

function reviewPanel(img, position) {
  const panel = el("div", "review-panel");
  panel.dataset.testid = "review";
  // Clicks and keys in the panel review; they do not open the CAM.
  panel.addEventListener("click", (ev) => ev.stopPropagation());
  panel.addEventListener("keydown", (ev) => ev.stopPropagation());
  if (img.model_area) panel.append(el("span", "model-area", `model: ${img.model_area} ${(100 * img.model_area_confidence).toFixed(0)} %`));
  const areas = (reviewer.areas && reviewer.areas.length) ? reviewer.areas : [img.area, "not_property"];
  const area = el("select", "label-area");
  area.setAttribute("aria-label", `area of ${img.image_id}`);
  for (const a of areas) {
    const opt = el("option", "", a === "not_property" ? "not a photo of the property" : a.replace(/_/g, " "));
    opt.value = a;
    area.append(opt);
  }
  area.value = img.area;
  const setArea = el("button", "set-area", "Set area");
  setArea.type = "button";
  setArea.addEventListener("click", () => write(img, "area", { area: area.value }));
  const rating = el("select", "rating");
  rating.setAttribute("aria-label", `rating of ${img.image_id}`);
  for (let r = 1; r <= 10; r++) { const o = el("option", "", String(r)); o.value = String(r); rating.append(o); }
  rating.value = String(Math.min(10, Math.max(1, Math.round(img.aesthetic))));
  const rate = el("button", "rate", "Rate");
  rate.type = "button";
  rate.addEventListener("click", () => write(img, "rating", { rating: Number(rating.value) }));
  panel.append(area, setArea, rating, rate);
  if (reviewer.role === "editor") {
    const hide = el("button", "hide", "Hide");
    hide.type = "button";
    hide.addEventListener("click", () => write(img, "hide", {}));
    const pin = el("button", "pin", position === 1 ? "Pin" : "Pin first");
    pin.type = "button";
    const pinned = (current.doc.images || []).filter((i) => i.reason === "pinned" && i.image_id !== img.image_id).map((i) => i.image_id);
    pin.addEventListener("click", () => writeHotel("pins", { image_ids: [img.image_id, ...pinned] }));
    panel.append(hide, pin);
  }
  return panel;
}

async function write(img, action, body) {
  const path = `/hotels/${encodeURIComponent(current.hotelId)}/images/${encodeURIComponent(img.image_id)}/${action}`;
  await send(path, body, `${action} of ${img.image_id}`);
}

async function writeHotel(action, body) {
  await send(`/hotels/${encodeURIComponent(current.hotelId)}/${action}`, body, action);
}

async function send(path, body, what) {
  const before = current.doc.updated_at;
  try {
    await reviewFetch(path, body);
  } catch (err) {
    return setStatus(`Could not save ${what}: ${err.message}`, true);
  }
  setStatus(`Saved ${what}; waiting for the gallery…`);
  // The scorer applies the event within a second or so: follow the gallery until it moved.
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const resp = await fetch(apiUrl(`/hotels/${encodeURIComponent(current.hotelId)}/gallery`), { cache: "no-store" });
    if (!resp.ok) continue;
    const doc = await resp.json();
    if (doc.updated_at !== before) {
      current.doc = doc;
      renderGallery(doc);
      return setStatus(`Saved ${what}.`);
    }
  }
  setStatus(`Saved ${what}; the gallery has not changed yet (ratings do not move it).`);
}

// ---- CAM dialog -------------------------------------------------------------
function openCam(img) {
  camImage = img;
  const areas = [...new Set((current?.doc.images || []).map((i) => i.area).concat(img.area))].sort();
  els.camArea.replaceChildren(...areas.map((a) => {
    const opt = el("option", "", a === img.area ? `${a.replace(/_/g, " ")} (predicted)` : a.replace(/_/g, " "));
    opt.value = a;
    return opt;
  }));
  els.camArea.value = img.area;
  els.camOriginal.src = safeImageUrl(img.url);
  showCam(img.area);
  if (!els.dialog.open) els.dialog.showModal();
}

function showCam(area) {
  const { hotelId } = current;
  const path = `/hotels/${encodeURIComponent(hotelId)}/images/${encodeURIComponent(camImage.image_id)}/cam.png`;
  els.camFrame.classList.add("loading");
  const why = camImage.reason ? ` · ${camImage.reason}` : "";
  els.camCaption.textContent = `CAM for “${area.replace(/_/g, " ")}” · ${camImage.image_id}${why}`;
  els.camImage.src = apiUrl(path, { area });
}

els.camImage.addEventListener("load", () => els.camFrame.classList.remove("loading"));
els.camImage.addEventListener("error", () => {
  els.camFrame.classList.remove("loading");
  els.camCaption.textContent = "The CAM could not be computed (image unreachable or not decodable).";
});
els.camArea.addEventListener("change", () => showCam(els.camArea.value));
els.dialog.addEventListener("click", (ev) => { if (ev.target === els.dialog) els.dialog.close(); });

// ---- landing view: every hotel, a page at a time (GET /hotels?q=&after=) ------------
const HOTELS_PER_PAGE = 50;
const list = { section: $("hotel-list"), items: $("hotel-list-items"), more: $("hotel-list-more"), next: "" };

async function listHotels(after = "") {
  let body;
  try {
    const resp = await fetch(apiUrl("/hotels", { q: "", limit: HOTELS_PER_PAGE, after }));
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    body = await resp.json();
  } catch (err) {
    return setStatus(`Hotel list failed: ${err.message}`, true);
  }
  els.namespace.textContent = `namespace: ${body.namespace}`;
  if (!after && !body.hotels.length) return setStatus("No hotels in this namespace yet.");
  setStatus(after ? els.status.textContent : "Pick a hotel, or type its id above.");
  for (const id of body.hotels) {
    const li = el("li");
    const a = el("a", "", id);
    a.href = `?hotel=${encodeURIComponent(id)}${pinnedNamespace ? `&namespace=${encodeURIComponent(pinnedNamespace)}` : ""}`;
    a.addEventListener("click", (ev) => { ev.preventDefault(); list.section.hidden = true; pick(id); });
    li.append(a);
    list.items.append(li);
  }
  list.next = body.next || "";
  list.more.hidden = !list.next;
  list.section.hidden = false;
}
list.more.addEventListener("click", () => listHotels(list.next));

// ---- start ------------------------------------------------------------------
if (params.get("hotel")) {
  els.input.value = params.get("hotel");
  loadGallery(params.get("hotel"));
} else {
  listHotels();
  startReview();
}
