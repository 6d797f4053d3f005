/* Activation atlas viewer: a canvas that pans and zooms across grid levels.
 *
 * Reads window.ATLAS_DATA[id] (written by data/<id>/atlas.js, schema 1): the atlas's
 * levels, each with a sprite sheet of icons and its cells {x, y, count, top, fidelity}.
 * Coordinates: the atlas is the unit square, x right, y down; the view is a centre
 * (cx, cy) and a zoom z, with z = 1 fitting the whole atlas in the canvas.
 */
(function () {
  "use strict";
  var SCHEMA = 1;
  var MIN_CELL_PX = 44; // a finer level is shown once its cells are at least this wide
  var MAX_ZOOM = 64;

  function Viewer(root) {
    var id = root.getAttribute("data-atlas");
    var base = root.getAttribute("data-root") + "data/";
    var payload = (window.ATLAS_DATA || {})[id];
    if (!payload || payload.schema !== SCHEMA) {
      root.querySelector(".viewer").textContent = "The atlas data did not load (data/" + id + "/atlas.js).";
      return;
    }
    this.atlas = payload.atlas;
    this.classes = payload.classes;
    this.base = base;
    this.root = root;
    this.frame = root.querySelector(".viewer");
    this.canvas = this.frame.querySelector("canvas");
    this.ctx = this.canvas.getContext("2d");
    this.tooltip = this.frame.querySelector(".tooltip");
    this.readout = root.querySelector(".level-readout");
    this.view = { cx: 0.5, cy: 0.5, z: 1 };
    this.sheets = {};
    this.lookup = this.atlas.level_data.map(function (level) {
      var map = {};
      level.cells.forEach(function (cell, i) { map[cell.x + "," + cell.y] = i; });
      return map;
    });
    this.overview = this.loadImage(this.atlas.overview);
    this.readHash();
    this.bind();
    this.resize();
  }

  Viewer.prototype.loadImage = function (path) {
    var self = this;
    var img = new Image();
    img.onload = function () { self.draw(); };
    img.src = this.base + path;
    return img;
  };

  // Sheets load on first use, so a level's icons cost nothing until the view reaches it.
  Viewer.prototype.sheet = function (index, number) {
    var key = index + ":" + number;
    if (!this.sheets[key]) this.sheets[key] = this.loadImage(this.atlas.level_data[index].tiles[number]);
    return this.sheets[key];
  };

  Viewer.prototype.scale = function () {
    return Math.min(this.width, this.height) * 0.96 * this.view.z; // a small margin round the atlas at z = 1
  };

  Viewer.prototype.levelIndex = function () {
    var scale = this.scale(), chosen = 0;
    this.atlas.level_data.forEach(function (level, i) {
      if (scale / level.size >= MIN_CELL_PX) chosen = i;
    });
    return chosen;
  };

  Viewer.prototype.toScreen = function (ax, ay) {
    var s = this.scale();
    return [(ax - this.view.cx) * s + this.width / 2, (ay - this.view.cy) * s + this.height / 2];
  };

  Viewer.prototype.toAtlas = function (sx, sy) {
    var s = this.scale();
    return [(sx - this.width / 2) / s + this.view.cx, (sy - this.height / 2) / s + this.view.cy];
  };

  Viewer.prototype.resize = function () {
    var rect = this.frame.getBoundingClientRect();
    var ratio = window.devicePixelRatio || 1;
    this.width = Math.max(1, rect.width);
    this.height = Math.max(1, rect.height);
    this.canvas.width = Math.round(this.width * ratio);
    this.canvas.height = Math.round(this.height * ratio);
    this.canvas.style.width = this.width + "px";
    this.canvas.style.height = this.height + "px";
    this.ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    this.draw();
  };

  Viewer.prototype.draw = function () {
    if (!this.width) return;
    var ctx = this.ctx, s = this.scale();
    ctx.clearRect(0, 0, this.width, this.height);
    var corner = this.toScreen(0, 0);
    var index = this.levelIndex();
    var level = this.atlas.level_data[index];
    var cellPx = s / level.size, icon = this.atlas.icon_px, gap = cellPx > 24 ? 1 : 0;
    var x0 = Math.max(0, Math.floor(-corner[0] / cellPx)), y0 = Math.max(0, Math.floor(-corner[1] / cellPx));
    var x1 = Math.min(level.size, Math.ceil((this.width - corner[0]) / cellPx));
    var y1 = Math.min(level.size, Math.ceil((this.height - corner[1]) / cellPx));
    var map = this.lookup[index], visible = [], loading = false;
    for (var y = y0; y < y1; y++) {
      for (var x = x0; x < x1; x++) {
        var i = map[x + "," + y];
        if (i === undefined) continue;
        var sheet = this.sheet(index, Math.floor(i / level.per_tile));
        if (!(sheet.complete && sheet.naturalWidth)) loading = true;
        visible.push([x, y, i, sheet]);
      }
    }
    if (loading && this.overview.complete && this.overview.naturalWidth) {
      ctx.drawImage(this.overview, corner[0], corner[1], s, s); // a small picture first, icons as they arrive
    }
    visible.forEach(function (v) {
      if (!(v[3].complete && v[3].naturalWidth)) return;
      var j = v[2] % level.per_tile;
      var sx = (j % level.columns) * icon, sy = Math.floor(j / level.columns) * icon;
      ctx.drawImage(v[3], sx, sy, icon, icon, corner[0] + v[0] * cellPx + gap, corner[1] + v[1] * cellPx + gap,
        cellPx - 2 * gap, cellPx - 2 * gap);
    });
    if (this.hover && this.hover.level === index) {
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 2;
      ctx.strokeRect(corner[0] + this.hover.x * cellPx, corner[1] + this.hover.y * cellPx, cellPx, cellPx);
    }
    this.setReadout(level, loading);
  };

  Viewer.prototype.setReadout = function (level, loading) {
    var text = level.size + " × " + level.size + " grid, zoom " + this.view.z.toFixed(1) + "×" +
      (loading ? " (loading icons…)" : "");
    if (this.readout.textContent !== text) this.readout.textContent = text;
  };

  Viewer.prototype.cellAt = function (sx, sy) {
    var index = this.levelIndex(), level = this.atlas.level_data[index];
    var a = this.toAtlas(sx, sy);
    var x = Math.floor(a[0] * level.size), y = Math.floor(a[1] * level.size);
    var i = this.lookup[index][x + "," + y];
    return i === undefined ? null : { level: index, x: x, y: y, cell: level.cells[i] };
  };

  Viewer.prototype.showTooltip = function (hit, sx, sy) {
    var tip = this.tooltip;
    if (!hit) { tip.hidden = true; return; }
    tip.textContent = "";
    var list = document.createElement("ol");
    var classes = this.classes;
    hit.cell.top.forEach(function (pair) {
      var item = document.createElement("li");
      var name = document.createElement("span");
      name.textContent = classes[pair[0]];
      var score = document.createElement("span");
      score.className = "score";
      score.textContent = pair[1].toFixed(3);
      item.appendChild(name);
      item.appendChild(score);
      list.appendChild(item);
    });
    var foot = document.createElement("p");
    foot.textContent = "Average of " + hit.cell.count + " activation" + (hit.cell.count === 1 ? "" : "s");
    tip.appendChild(list);
    tip.appendChild(foot);
    tip.hidden = false;
    var left = Math.min(sx + 16, this.width - tip.offsetWidth - 4);
    var top = Math.min(sy + 16, this.height - tip.offsetHeight - 4);
    tip.style.left = Math.max(4, left) + "px";
    tip.style.top = Math.max(4, top) + "px";
  };

  Viewer.prototype.zoomAt = function (factor, sx, sy) {
    var before = this.toAtlas(sx, sy);
    this.view.z = Math.min(MAX_ZOOM, Math.max(0.5, this.view.z * factor));
    var after = this.toAtlas(sx, sy);
    this.view.cx += before[0] - after[0];
    this.view.cy += before[1] - after[1];
    this.changed();
  };

  Viewer.prototype.pan = function (dx, dy) {
    var s = this.scale();
    this.view.cx = Math.min(1.5, Math.max(-0.5, this.view.cx - dx / s));
    this.view.cy = Math.min(1.5, Math.max(-0.5, this.view.cy - dy / s));
    this.changed();
  };

  Viewer.prototype.changed = function () {
    this.draw();
    var v = this.view;
    var hash = "#x=" + v.cx.toFixed(4) + "&y=" + v.cy.toFixed(4) + "&z=" + v.z.toFixed(3);
    if (window.history && history.replaceState) history.replaceState(null, "", hash);
  };

  Viewer.prototype.readHash = function () {
    var params = {};
    window.location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var kv = part.split("=");
      if (kv.length === 2) params[kv[0]] = parseFloat(kv[1]);
    });
    if (isFinite(params.x)) this.view.cx = params.x;
    if (isFinite(params.y)) this.view.cy = params.y;
    if (isFinite(params.z) && params.z > 0) this.view.z = Math.min(MAX_ZOOM, params.z);
  };

  Viewer.prototype.bind = function () {
    var self = this, frame = this.frame, drag = null;
    window.addEventListener("resize", function () { self.resize(); });
    frame.addEventListener("wheel", function (e) {
      e.preventDefault();
      var r = frame.getBoundingClientRect();
      self.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    frame.addEventListener("pointerdown", function (e) {
      drag = { x: e.clientX, y: e.clientY };
      frame.setPointerCapture(e.pointerId);
    });
    frame.addEventListener("pointerup", function () { drag = null; });
    frame.addEventListener("pointercancel", function () { drag = null; });
    frame.addEventListener("pointermove", function (e) {
      var r = frame.getBoundingClientRect();
      if (drag) {
        self.pan(e.clientX - drag.x, e.clientY - drag.y);
        drag = { x: e.clientX, y: e.clientY };
      }
      var hit = self.cellAt(e.clientX - r.left, e.clientY - r.top);
      self.hover = hit;
      self.showTooltip(hit, e.clientX - r.left, e.clientY - r.top);
      self.draw();
    });
    frame.addEventListener("pointerleave", function () {
      self.hover = null;
      self.tooltip.hidden = true;
      self.draw();
    });
    frame.addEventListener("keydown", function (e) {
      var step = 60;
      var keys = {
        ArrowLeft: function () { self.pan(step, 0); }, ArrowRight: function () { self.pan(-step, 0); },
        ArrowUp: function () { self.pan(0, step); }, ArrowDown: function () { self.pan(0, -step); },
        "+": function () { self.zoomAt(1.5, self.width / 2, self.height / 2); },
        "=": function () { self.zoomAt(1.5, self.width / 2, self.height / 2); },
        "-": function () { self.zoomAt(1 / 1.5, self.width / 2, self.height / 2); },
        "0": function () { self.view = { cx: 0.5, cy: 0.5, z: 1 }; self.changed(); }
      };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });
    var select = this.root.querySelector(".layer-switch");
    if (select) select.addEventListener("change", function () {
      window.location.href = select.value + window.location.hash;
    });
  };

  document.querySelectorAll(".explorer[data-atlas]").forEach(function (el) {
    el.viewer = new Viewer(el);
  });
})();
