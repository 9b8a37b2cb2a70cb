"""The `superact detect --html` page: per-token concept scores for many texts, offline.

One self-contained HTML file (inline CSS and vanilla JS, no network fetch of any
kind): the records (the detection contract of ``superact detect --json``, with
``token_scores``) are embedded as JSON in a ``<script type="application/json">``
block and the page draws them with ``textContent`` only, so a token such as
``<script>`` is shown as text, never parsed. One concept is shown at a time
(a selector); tokens are coloured on a diverging scale centred on that concept's
threshold tau, SuperActivators (score > tau) are outlined, hovering a token
shows its exact score.

CircuitsVis (``colored_tokens_multi``) is not used: its offline rendering inlines
a 1.3 MB React/tfjs bundle per call (its ``str()`` form loads the bundle from
unpkg instead), a token ``<b>x</b>`` came out as a ``<b>`` element (tokens are
rendered as HTML), and it has no threshold, outline or per-text concept list.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

from superact_lens.errors import InputError, InputTypeError

__all__ = ["detect_page_html", "detect_page_iframe", "write_detect_page"]


def detect_page_html(records: list[dict], *, title: str = "superact detect") -> str:
    """The self-contained heat-map page of ``records`` (one per text, each concept
    with ``token_scores``), as a string.

    Raises :class:`InputError` naming the record index when a record lacks
    ``tokens`` / ``token_scores`` / ``threshold`` or has one score per token missing.
    """
    texts, concepts = _page_data(records)
    data = {
        "title": str(title),
        "concepts": concepts,
        "default": _default_concept(texts, concepts),
        "texts": texts,
    }
    return _PAGE.format(
        title=html.escape(str(title)),
        css=_CSS,
        data=_script_json(data),
        js=_JS,
    )


def write_detect_page(
    records: list[dict], path: str | Path, *, title: str = "superact detect"
) -> Path:
    """Write :func:`detect_page_html` of ``records`` to ``path`` (parents created)."""
    page = detect_page_html(records, title=title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def detect_page_iframe(
    records: list[dict], *, title: str = "superact detect", height: int = 360
) -> str:
    """:func:`detect_page_html` inside an ``<iframe srcdoc>``, for a notebook
    (``IPython.display.HTML``): the page's script and styles stay in their frame."""
    page = detect_page_html(records, title=title)
    return (
        f'<iframe srcdoc="{html.escape(page, quote=True)}" '
        f'style="width:100%;height:{int(height)}px;border:0" sandbox="allow-scripts"></iframe>'
    )


def _page_data(records: Sequence[Mapping[str, Any]]) -> tuple[list[dict], list[str]]:
    """The embedded data: per text its tokens, ``present`` list and per-concept scores;
    and every concept name in first-seen (detector) order."""
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise InputTypeError(
            f"records must be a list of detection records (dicts), got {type(records).__name__}"
        )
    texts: list[dict] = []
    concepts: dict[str, None] = {}
    for i, rec in enumerate(records):
        where = f"records[{i}]"
        if not isinstance(rec, Mapping):
            raise InputTypeError(f"{where} must be a dict, got {type(rec).__name__}")
        tokens = rec.get("tokens")
        if not isinstance(tokens, Sequence) or isinstance(tokens, str):
            raise InputError(f"{where} has no 'tokens' list")
        if not all(isinstance(t, str) for t in tokens):
            raise InputError(f"{where}['tokens'] must be strings")
        per_concept = rec.get("concepts")
        if not isinstance(per_concept, Mapping):
            raise InputError(f"{where} has no 'concepts' mapping")
        scores = {
            name: _concept_data(f"{where}['concepts'][{name!r}]", c, len(tokens))
            for name, c in per_concept.items()
        }
        concepts.update(dict.fromkeys(scores))
        present = rec.get("present")
        if present is None:
            present = [name for name, c in scores.items() if c["present"]]
        elif isinstance(present, str) or not all(isinstance(p, str) for p in present):
            raise InputError(f"{where}['present'] must be a list of concept names")
        texts.append(
            {
                "index": rec.get("index", i),
                "text": str(rec.get("text", "")),
                "tokens": list(tokens),
                "present": list(present),
                "scores": scores,
            }
        )
    return texts, list(concepts)


def _concept_data(where: str, c: Any, n_tokens: int) -> dict:
    if not isinstance(c, Mapping):
        raise InputError(f"{where} must be a dict, got {type(c).__name__}")
    if "token_scores" not in c:
        raise InputError(
            f"{where} has no 'token_scores': the page needs one score per token "
            "(detect with token scores)"
        )
    token_scores = c["token_scores"]
    if isinstance(token_scores, (str, bytes)) or not isinstance(token_scores, Sequence):
        raise InputError(f"{where}['token_scores'] must be a list of numbers")
    if len(token_scores) != n_tokens:
        raise InputError(
            f"{where} has {len(token_scores)} token_scores for {n_tokens} tokens "
            "(expected one per token)"
        )
    if "threshold" not in c:
        raise InputError(f"{where} has no 'threshold'")
    return {
        "token_scores": [
            _number(f"{where}['token_scores'][{j}]", s) for j, s in enumerate(token_scores)
        ],
        "threshold": _number(f"{where}['threshold']", c["threshold"]),
        "score": None if c.get("score") is None else _number(f"{where}['score']", c["score"]),
        "layer": c.get("layer"),
        "present": bool(c.get("present", False)),
    }


def _number(where: str, v: Any) -> float | str:
    """A JSON-safe number: non-finite floats become the strings JavaScript's
    ``Number()`` reads back ("Infinity", "-Infinity", "NaN"); JSON has no literal
    for them and ``JSON.parse`` rejects Python's ``NaN``."""
    if isinstance(v, bool) or not isinstance(v, Real):
        raise InputError(f"{where} must be a number, got {v!r}")
    v = float(v)
    if math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def _default_concept(texts: list[dict], concepts: list[str]) -> str | None:
    """The first concept (detector order) that fires in any text, else the first."""
    fired = {name for t in texts for name in t["present"]}
    return next((c for c in concepts if c in fired), concepts[0] if concepts else None)


def _script_json(data: dict) -> str:
    """JSON that is safe inside ``<script>``: ``<``, ``>`` and ``&`` as ``\\u`` escapes,
    so no text or token can close the block (``</script>``) or open a comment."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .5em; }
#controls { display: flex; gap: 1em; align-items: center; flex-wrap: wrap; }
#legend { margin: .6em 0 1em; font-size: .9em; color: #444; }
.swatch { display: inline-block; width: 1.2em; height: .9em; vertical-align: middle;
  border: 1px solid #ccc; }
.text { border-top: 1px solid #ddd; padding: .6em 0; }
.head { font-size: .85em; color: #555; margin-bottom: .3em; display: flex; gap: 1em;
  flex-wrap: wrap; }
.chip { font: inherit; border: 1px solid #999; border-radius: 3px; background: #f4f4f4;
  padding: 0 .3em; margin-right: .3em; cursor: pointer; }
.chip.on { background: #1a9850; color: #fff; border-color: #1a9850; }
.tokens { font-family: ui-monospace, monospace; line-height: 2.1; }
.tok { white-space: pre-wrap; padding: 2px 1px; margin: 0 1px; border-radius: 3px; }
.tok.sa { outline: 2px solid #1a9850; }
.tok:hover, .tok:focus { box-shadow: 0 0 0 1px #222; }
#tip { position: absolute; display: none; background: #222; color: #fff; padding: 3px 6px;
  border-radius: 3px; font-size: .85em; pointer-events: none; white-space: pre; }
"""

_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("superact-data").textContent);
  var num = function (v) { return typeof v === "string" ? Number(v) : v; };
  // 4 significant digits in the headers; the tooltip gives the exact value
  var show = function (v) {
    if (v === null || v === undefined) return "n/a";
    var x = num(v);
    return isFinite(x) ? String(Number(x.toPrecision(4))) : String(x);
  };
  var select = document.getElementById("concept");
  var tip = document.getElementById("tip");
  var rows = [];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  data.concepts.forEach(function (name) {
    var o = el("option", "", name);
    o.value = name;
    select.appendChild(o);
  });

  var list = document.getElementById("texts");
  data.texts.forEach(function (t) {
    var box = el("section", "text");
    var head = el("div", "head");
    head.appendChild(el("span", "idx", "#" + t.index));
    var present = el("span", "present", "present: ");
    if (t.present.length === 0) present.appendChild(el("span", "none", "none"));
    var chips = t.present.map(function (name) {
      var b = el("button", "chip", name);
      b.type = "button";
      b.dataset.concept = name;
      b.addEventListener("click", function () { select.value = name; paint(name); });
      present.appendChild(b);
      return b;
    });
    var line = el("span", "line");
    head.appendChild(present);
    head.appendChild(line);
    var toks = el("div", "tokens");
    var spans = t.tokens.map(function (tok, j) {
      var s = el("span", "tok", tok);
      s.tabIndex = 0;
      s.dataset.pos = String(j);
      toks.appendChild(s);
      return s;
    });
    box.appendChild(head);
    box.appendChild(toks);
    list.appendChild(box);
    rows.push({ t: t, spans: spans, line: line, chips: chips });
  });

  function firstThreshold(name) {
    for (var i = 0; i < data.texts.length; i++) {
      var c = data.texts[i].scores[name];
      if (c) return num(c.threshold);
    }
    return NaN;
  }

  // Each side of the centre has its own range (as matplotlib's TwoSlopeNorm), so the few
  // tokens above tau reach full red even when most tokens sit far below it.
  function colour(d, hi, lo) {
    var span = d > 0 ? hi : lo;
    var a = span > 0 && isFinite(d) ? Math.min(1, Math.abs(d) / span) * 0.85 : 0;
    if (!isFinite(d) && !isNaN(d)) a = 0.85;
    return d > 0 ? "rgba(215, 48, 39, " + a + ")" : "rgba(69, 117, 180, " + a + ")";
  }

  function centreOf(c) {
    var t = num(c.threshold);
    return isFinite(t) ? t : 0;
  }

  function paint(name) {
    var tau = firstThreshold(name);
    var hi = 0;
    var lo = 0;
    rows.forEach(function (r) {
      var c = r.t.scores[name];
      if (!c) return;
      c.token_scores.forEach(function (s) {
        var d = num(s) - centreOf(c);
        if (isFinite(d)) {
          hi = Math.max(hi, d);
          lo = Math.max(lo, -d);
        }
      });
    });
    rows.forEach(function (r) {
      var c = r.t.scores[name];
      r.chips.forEach(function (b) { b.classList.toggle("on", b.dataset.concept === name); });
      if (!c) {
        r.line.textContent = name + ": not scored for this text";
        r.spans.forEach(function (s) {
          s.style.backgroundColor = "";
          s.classList.remove("sa");
          delete s.dataset.score;
        });
        return;
      }
      var t = num(c.threshold);
      r.line.textContent = name + ": max " + show(c.score) + (c.present ? " > " : " \u2264 ") +
        "\u03c4 " + show(c.threshold) + (c.layer === null || c.layer === undefined ? "" :
        " (layer " + c.layer + ")") + (c.present ? ", present" : ", absent");
      r.spans.forEach(function (s, j) {
        var v = num(c.token_scores[j]);
        s.dataset.score = String(v);
        s.dataset.threshold = String(t);
        s.style.backgroundColor = colour(v - centreOf(c), hi, lo);
        s.classList.toggle("sa", v > t);
      });
    });
    document.getElementById("tau").textContent = show(tau);
    document.getElementById("hi").textContent = "+" + hi.toPrecision(3);
    document.getElementById("lo").textContent = "-" + lo.toPrecision(3);
    document.getElementById("centre").textContent = isFinite(tau) ?
      "centred on the threshold \u03c4" : "centred on 0 (this concept's \u03c4 is not finite)";
  }

  function hover(ev) {
    var s = ev.target;
    if (!s.classList || !s.classList.contains("tok") || s.dataset.score === undefined) return;
    tip.textContent = select.value + "  token " + s.dataset.pos + " " +
      JSON.stringify(s.textContent) + "\nscore " + s.dataset.score +
      "  (\u03c4 " + s.dataset.threshold + ")" +
      (s.classList.contains("sa") ? "  SuperActivator" : "");
    var box = s.getBoundingClientRect();
    tip.style.left = (window.scrollX + box.left) + "px";
    tip.style.top = (window.scrollY + box.bottom + 4) + "px";
    tip.style.display = "block";
  }
  function unhover() { tip.style.display = "none"; }
  list.addEventListener("mouseover", hover);
  list.addEventListener("focusin", hover);
  list.addEventListener("mouseout", unhover);
  list.addEventListener("focusout", unhover);
  select.addEventListener("change", function () { paint(select.value); });

  if (data.default !== null) { select.value = data.default; paint(data.default); }
  document.getElementById("count").textContent = String(data.texts.length);
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<h1>{title}</h1>
<div id="controls">
  <label>concept <select id="concept"></select></label>
  <span><span id="count"></span> texts</span>
  <span>threshold &tau; = <b id="tau"></b></span>
</div>
<div id="legend">
  Colour scale <span id="centre">centred on the threshold &tau;</span>:
  <span class="swatch" style="background: rgba(69, 117, 180, 0.85)"></span> below &tau;,
  <span class="swatch" style="background: #fff"></span> at &tau;,
  <span class="swatch" style="background: rgba(215, 48, 39, 0.85)"></span> above &tau;
  (full red at <span id="hi"></span>, full blue at <span id="lo"></span> from the centre:
  the highest and lowest token score of this concept).<br>
  <span class="swatch" style="outline: 2px solid #1a9850"></span> outlined: SuperActivators
  (token score &gt; &tau;). Hover a token for its exact score; click a concept under a
  text to show it.
</div>
<noscript>This page draws the tokens with JavaScript; enable it to see them.</noscript>
<div id="texts"></div>
<div id="tip" role="tooltip"></div>
<script type="application/json" id="superact-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""
