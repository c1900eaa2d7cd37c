// Keyboard review: one focused card; a/r/f record a verdict at once (then move on), u withdraws it.
(function () {
  const cards = Array.from(document.querySelectorAll(".card"));
  const zoom = document.getElementById("zoom");
  const zoomImg = zoom.querySelector("img");
  let at = 0, scale = 1;

  function focus(i) {
    if (!cards.length) return;
    at = Math.max(0, Math.min(cards.length - 1, i));
    cards.forEach((c, k) => c.classList.toggle("focused", k === at));
    cards[at].focus({preventScroll: true});
    cards[at].scrollIntoView({block: "nearest"});
  }

  async function decide(card, verdict) {
    const note = card.querySelector(".note").value;
    const res = await fetch("/api/decision", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({pair_id: card.dataset.pair, decision: verdict || null, note: note})});
    const out = await res.json();
    const p = card.querySelector(".decision");
    if (!res.ok) { p.textContent = "not saved: " + out.error; return false; }
    const d = out.decision;
    card.dataset.decision = d ? d.decision : "";
    p.dataset.decision = card.dataset.decision;
    p.innerHTML = d ? `<b class="v-${d.decision}">${d.decision}</b> by ${d.reviewer} ${d.time}` : "not reviewed";
    return true;
  }

  function openZoom(src) { zoomImg.src = src; scale = 1; zoomImg.style.transform = ""; zoom.hidden = false; }
  function rescale(f) { scale = Math.max(0.5, Math.min(8, scale * f)); zoomImg.style.transform = `scale(${scale})`; }

  cards.forEach((card, i) => {
    card.dataset.decision = card.querySelector(".decision").dataset.decision;
    card.addEventListener("click", () => focus(i));
    card.querySelectorAll("button[data-verdict]").forEach(b =>
      b.addEventListener("click", () => decide(card, b.dataset.verdict)));
    card.querySelectorAll("img").forEach(img => img.addEventListener("click", () => openZoom(img.src)));
  });
  zoom.addEventListener("click", () => { zoom.hidden = true; });
  zoom.addEventListener("wheel", e => { e.preventDefault(); rescale(e.deltaY < 0 ? 1.25 : 0.8); }, {passive: false});

  document.addEventListener("keydown", async e => {
    if (e.target.matches("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    if (!zoom.hidden) {
      if (e.key === "Escape" || e.key === "z") zoom.hidden = true;
      else if (e.key === "+" || e.key === "=") rescale(1.25);
      else if (e.key === "-") rescale(0.8);
      return;
    }
    const card = cards[at];
    const verdict = {a: "accept", r: "reject", f: "flag"}[e.key];
    if (verdict && card) { if (await decide(card, verdict)) focus(at + 1); }
    else if (e.key === "u" && card) await decide(card, "");
    else if (e.key === "j" || e.key === "ArrowDown") focus(at + 1);
    else if (e.key === "k" || e.key === "ArrowUp") focus(at - 1);
    else if (e.key === "z" && card) openZoom(card.querySelector("img.synthetic").src);
    else if (e.key === "n") { const a = document.getElementById("next-page"); if (a) location = a.href; }
    else if (e.key === "p") { const a = document.getElementById("prev-page"); if (a) location = a.href; }
    else return;
    e.preventDefault();
  });
  const hash = location.hash && document.getElementById(location.hash.slice(1));
  focus(hash ? cards.indexOf(hash) : 0);
})();
