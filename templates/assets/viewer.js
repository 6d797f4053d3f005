/* Activation atlas viewer: a canvas that pans and zooms across grid levels.
 *
 * Data come as scripts that register in window.ATLAS_DATA (see generator/tiles.py, schema 2):
 * "<id>" the atlas and class names, "<id>/level-<n>" a level's cells, "<id>/classes-<k>"
 * the cells' attribution to a chunk of classes. <script> elements load from file://,
 * where fetch() is blocked, so one code path serves disk and web.
 * Coordinates: the atlas is the unit square, x right, y down; the view is a centre
 * (cx, cy) and a zoom z, with z = 1 fitting the whole atlas in the canvas. A view
 * reads and writes as "layer=..&x=..&y=..&z=..&class=..&sign=-", the URL hash's form.
 */
(function () {
  "use strict";
  var SCHEMA = 2;
  var MIN_CELL_PX = 44; // a finer level is shown once its cells are at least this wide
  var MAX_ZOOM = 64;
  var FADED = 0.07; // opacity of icons with no attribution to the filtered class
  var DATA = window.ATLAS_DATA = window.ATLAS_DATA || {};
  var waiting = {};
  var count = 0;

  function load(key, src, done) {
    if (DATA[key]) { done(DATA[key]); return; }
    if (waiting[key]) { waiting[key].push(done); return; }
    waiting[key] = [done];
    var el = document.createElement("script");
    el.src = src;
    el.onload = el.onerror = function () {
      var calls = waiting[key];
      delete waiting[key];
      calls.forEach(function (call) { call(DATA[key] || null); });
    };
    document.head.appendChild(el);
  }

  function parseView(text) {
    var view = {};
    (text || "").replace(/^#/, "").split("&").forEach(function (part) {
      var i = part.indexOf("=");
      if (i > 0) {
        try { view[part.slice(0, i)] = decodeURIComponent(part.slice(i + 1)); } catch (e) { /* a bad escape */ }
      }
    });
    return view;
  }

  function attr(text) {
    return String(text).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function decodeCodes(b64) {
    var raw = atob(b64), codes = new Int8Array(raw.length);
    for (var i = 0; i < raw.length; i++) codes[i] = raw.charCodeAt(i) << 24 >> 24;
    return codes;
  }

  function Viewer(root) {
    this.root = root;
    this.mode = root.getAttribute("data-mode") || "explorer";
    this.ownsHash = this.mode !== "inline";
    this.base = root.getAttribute("data-root") + "data/";
    this.frame = root.querySelector(".viewer");
    this.canvas = root.querySelector(".atlas-canvas");
    this.ctx = this.canvas.getContext("2d");
    this.minimap = root.querySelector(".minimap");
    this.tooltip = root.querySelector(".tooltip");
    this.readout = root.querySelector(".level-readout");
    this.announcer = root.querySelector(".announce");
    this.search = root.querySelector(".class-search");
    this.signButton = root.querySelector(".class-sign");
    this.view = { cx: 0.5, cy: 0.5, z: 1 };
    this.filter = { cls: -1, sign: 1 };
    this.images = {};
    this.requested = [];
    this.pointers = {};
    this.firstPaint = null;
    var start = parseView(root.getAttribute("data-view"));
    var hash = parseView(window.location.hash);
    if (this.ownsHash && (hash.layer || hash.x)) start = hash;
    this.bind();
    this.open(start.layer || root.getAttribute("data-atlas"), start);
  }

  Viewer.prototype.open = function (id, start) {
    var self = this;
    var others = this.payload ? this.payload.others : [];
    var known = others.filter(function (o) { return o.id === id; })[0];
    var src = this.base + (known ? known.script : id + "/atlas.js");
    load(id, src, function (payload) {
      if (!payload || payload.schema !== SCHEMA) {
        if (id !== self.root.getAttribute("data-atlas")) { self.open(self.root.getAttribute("data-atlas"), {}); return; }
        self.frame.textContent = "The atlas data did not load (data/" + id + "/atlas.js).";
        return;
      }
      self.payload = payload;
      self.atlas = payload.atlas;
      self.classes = payload.classes;
      self.cells = [];
      self.overview = self.image(self.atlas.overview);
      self.fillClassList();
      self.root.querySelectorAll(".layer-switch button").forEach(function (b) {
        b.setAttribute("aria-pressed", b.getAttribute("data-layer") === id ? "true" : "false");
      });
      var link = self.root.querySelector(".open-explorer");
      if (link) link.setAttribute("href", self.root.getAttribute("data-root") + "explore/" + id + ".html");
      self.frame.setAttribute("aria-label", "Activation atlas of layer " + self.atlas.layer +
        ". Arrow keys move between cells, plus and minus zoom, 0 resets the view.");
      self.applyView(start || {});
      self.resize();
    });
  };

  Viewer.prototype.applyView = function (v) {
    var x = parseFloat(v.x), y = parseFloat(v.y), z = parseFloat(v.z);
    this.view = { cx: isFinite(x) ? x : 0.5, cy: isFinite(y) ? y : 0.5,
      z: isFinite(z) && z > 0 ? Math.min(MAX_ZOOM, Math.max(0.5, z)) : 1 };
    this.filter.sign = v.sign === "-" ? -1 : 1;
    this.setClass(v["class"] !== undefined ? this.findClass(v["class"]) : -1, true);
  };

  Viewer.prototype.viewString = function () {
    var v = this.view;
    var text = "layer=" + encodeURIComponent(this.atlas.id) + "&x=" + v.cx.toFixed(4) + "&y=" + v.cy.toFixed(4) +
      "&z=" + v.z.toFixed(3);
    if (this.filter.cls >= 0) text += "&class=" + encodeURIComponent(this.classes[this.filter.cls]);
    if (this.filter.cls >= 0 && this.filter.sign < 0) text += "&sign=-";
    return text;
  };

  // --- data --------------------------------------------------------------------------------

  Viewer.prototype.image = function (path) {
    if (!this.images[path]) {
      var self = this, img = new Image();
      img.onload = function () { self.draw(); };
      img.src = this.base + path;
      this.images[path] = img;
      this.requested.push(path);
    }
    return this.images[path];
  };

  // A level's cells, decoded once: {x, y, count, fidelity, top: [[class, score], ...]} and a lookup by place.
  Viewer.prototype.levelCells = function (index) {
    if (this.cells[index]) return this.cells[index];
    var self = this, atlas = this.atlas, level = atlas.level_data[index];
    load(atlas.id + "/level-" + level.size, this.base + level.cells_script, function (data) {
      if (!data || self.atlas !== atlas || self.cells[index]) return;
      var cells = data.cells.map(function (c) {
        var top = [];
        for (var k = 0; k < c[4].length; k += 2) top.push([c[4][k], c[4][k + 1]]);
        return { x: c[0], y: c[1], count: c[2], fidelity: c[3], top: top };
      });
      var at = {};
      cells.forEach(function (cell, i) { at[cell.x + "," + cell.y] = i; });
      self.cells[index] = { list: cells, at: at }; // every cell's tile exists, so tiles need no lookup
      self.draw();
      if (self.cursorOn) self.announceCursor(); // a key press that arrived before the cells did
    });
    return null;
  };

  // The filtered class's codes (-127..127, relative to its largest |score| in the level) for every cell.
  Viewer.prototype.classCodes = function (index) {
    var cls = this.filter.cls, atlas = this.atlas;
    if (cls < 0) return null;
    var chunk = Math.floor(cls / atlas.class_chunk), key = atlas.id + "/classes-" + chunk;
    var data = DATA[key];
    if (!data) {
      var self = this;
      load(key, this.base + atlas.class_scripts[chunk], function () { self.draw(); });
      return null;
    }
    data.decoded = data.decoded || {};
    var slot = index + ":" + cls;
    if (!data.decoded[slot]) {
      data.decoded[slot] = { codes: decodeCodes(data.codes[index][cls - data.first]),
        scale: data.scales[index][cls - data.first] };
    }
    return data.decoded[slot];
  };

  Viewer.prototype.findClass = function (query) {
    var q = String(query).trim().toLowerCase(), classes = this.classes, i;
    if (!q) return -1;
    if (/^\d+$/.test(q) && +q < classes.length) return +q;
    var tests = [
      function (name) { return name === q; },
      function (name) { return name.indexOf(q) === 0; },
      function (name) { return name.indexOf(q) >= 0; }
    ];
    for (var t = 0; t < tests.length; t++) {
      for (i = 0; i < classes.length; i++) if (tests[t](String(classes[i]).toLowerCase())) return i;
    }
    return -1;
  };

  Viewer.prototype.fillClassList = function () {
    if (!this.search) return;
    var list = document.createElement("datalist");
    list.id = "atlas-classes-" + (++count);
    this.classes.forEach(function (name) {
      var option = document.createElement("option");
      option.value = name;
      list.appendChild(option);
    });
    if (this.classList) this.classList.remove();
    this.classList = list;
    this.root.appendChild(list);
    this.search.setAttribute("list", list.id);
  };

  Viewer.prototype.setClass = function (cls, quiet) {
    this.filter.cls = cls;
    if (this.search && document.activeElement !== this.search) this.search.value = cls >= 0 ? this.classes[cls] : "";
    if (this.signButton) this.signButton.setAttribute("aria-pressed", this.filter.sign < 0 ? "true" : "false");
    this.root.classList.toggle("filtered", cls >= 0);
    if (!quiet) this.changed();
  };

  // --- geometry ----------------------------------------------------------------------------

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

  Viewer.prototype.cellAtAtlas = function (ax, ay) {
    var index = this.levelIndex(), level = this.atlas.level_data[index], cells = this.levelCells(index);
    var x = Math.floor(ax * level.size), y = Math.floor(ay * level.size);
    if (!cells || x < 0 || y < 0 || x >= level.size || y >= level.size) return null;
    var i = cells.at[x + "," + y];
    return { level: index, size: level.size, x: x, y: y, index: i, cell: i === undefined ? null : cells.list[i] };
  };

  Viewer.prototype.resize = function () {
    if (!this.atlas) return;
    var rect = this.frame.getBoundingClientRect();
    var ratio = window.devicePixelRatio || 1;
    this.width = Math.max(1, rect.width);
    this.height = Math.max(1, rect.height);
    this.canvas.width = Math.round(this.width * ratio);
    this.canvas.height = Math.round(this.height * ratio);
    this.canvas.style.width = this.width + "px";
    this.canvas.style.height = this.height + "px";
    this.ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    this.changed(true);
  };

  // --- drawing -----------------------------------------------------------------------------

  Viewer.prototype.draw = function () {
    if (!this.width || !this.atlas) return;
    var ctx = this.ctx, s = this.scale(), atlas = this.atlas;
    ctx.clearRect(0, 0, this.width, this.height);
    var corner = this.toScreen(0, 0);
    var index = this.levelIndex(), level = atlas.level_data[index], cells = this.levelCells(index);
    var cellPx = s / level.size, icon = atlas.icon_px, span = level.tile_cells;
    var x0 = Math.max(0, Math.floor(-corner[0] / cellPx)), y0 = Math.max(0, Math.floor(-corner[1] / cellPx));
    var x1 = Math.min(level.size, Math.ceil((this.width - corner[0]) / cellPx));
    var y1 = Math.min(level.size, Math.ceil((this.height - corner[1]) / cellPx));
    var loading = !cells, visible = [], x, y;
    if (cells) {
      for (y = y0; y < y1; y++) {
        for (x = x0; x < x1; x++) {
          var i = cells.at[x + "," + y];
          if (i === undefined) continue;
          var tile = Math.floor(x / span) + "-" + Math.floor(y / span);
          var img = this.image(atlas.id + "/" + level.size + "-" + tile + ".webp");
          if (!(img.complete && img.naturalWidth)) loading = true;
          visible.push([cells.list[i], i, img]);
        }
      }
    }
    var overview = this.overview;
    if (loading && overview.complete && overview.naturalWidth) {
      ctx.drawImage(overview, corner[0], corner[1], s, s); // a small picture first, icons as they arrive
      this.painted();
    }
    var codes = this.classCodes(index), maxCount = level.max_count || 1, gap = cellPx > 24 ? 1 : 0;
    visible.forEach(function (v) {
      var cell = v[0], img = v[2];
      if (!(img.complete && img.naturalWidth)) return;
      // Icons sized by density: a cell of many activations fills its square, a sparse one less.
      var side = (cellPx - 2 * gap) * (0.45 + 0.55 * Math.sqrt(cell.count / maxCount));
      var left = corner[0] + (cell.x + 0.5) * cellPx - side / 2, top = corner[1] + (cell.y + 0.5) * cellPx - side / 2;
      ctx.globalAlpha = 1;
      if (codes) {
        var strength = Math.max(0, (this.filter.sign * codes.codes[v[1]]) / 127);
        ctx.globalAlpha = FADED + (1 - FADED) * Math.sqrt(strength);
      }
      ctx.drawImage(img, (cell.x % span) * icon, (cell.y % span) * icon, icon, icon, left, top, side, side);
    }, this);
    ctx.globalAlpha = 1;
    if (visible.length && !loading) this.painted();
    var marks = [[this.hover, "#111"], [this.cursorOn ? this.cursor() : null, "#1a5fb4"]];
    marks.forEach(function (mark) {
      var hit = mark[0];
      if (!hit || hit.level !== index) return;
      ctx.strokeStyle = mark[1];
      ctx.lineWidth = 2;
      ctx.strokeRect(corner[0] + hit.x * cellPx + 1, corner[1] + hit.y * cellPx + 1, cellPx - 2, cellPx - 2);
    });
    this.drawMinimap();
    this.setReadout(level, loading || (this.filter.cls >= 0 && !codes));
  };

  Viewer.prototype.painted = function () {
    if (this.firstPaint === null) this.firstPaint = performance.now();
  };

  Viewer.prototype.drawMinimap = function () {
    var map = this.minimap;
    if (!map) return;
    var show = this.view.z > 1.05;
    map.hidden = !show;
    if (!show) return;
    var size = map.clientWidth || 112, ratio = window.devicePixelRatio || 1, ctx = map.getContext("2d");
    if (map.width !== Math.round(size * ratio)) { map.width = map.height = Math.round(size * ratio); }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, size, size);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, size, size);
    if (this.overview.complete && this.overview.naturalWidth) ctx.drawImage(this.overview, 0, 0, size, size);
    var a = this.toAtlas(0, 0), b = this.toAtlas(this.width, this.height);
    ctx.strokeStyle = "#d93025";
    ctx.lineWidth = 2;
    ctx.strokeRect(a[0] * size, a[1] * size, (b[0] - a[0]) * size, (b[1] - a[1]) * size);
  };

  Viewer.prototype.setReadout = function (level, loading) {
    var text = level.size + " × " + level.size + " grid, zoom " + this.view.z.toFixed(1) + "×" +
      (this.filter.cls >= 0 ? ", " + (this.filter.sign < 0 ? "against " : "") + this.classes[this.filter.cls] : "") +
      (loading ? " (loading…)" : "");
    if (this.readout && this.readout.textContent !== text) this.readout.textContent = text;
  };

  // --- the cell under the pointer or the keyboard cursor ------------------------------------

  Viewer.prototype.cursor = function () {
    return this.cellAtAtlas(this.view.cx, this.view.cy);
  };

  Viewer.prototype.describe = function (hit) {
    if (!hit) return "";
    var where = "Row " + (hit.y + 1) + ", column " + (hit.x + 1) + " of the " + hit.size + " × " + hit.size + " grid: ";
    if (!hit.cell) return where + "no activations here.";
    var classes = this.classes;
    return where + hit.cell.top.map(function (p) { return classes[p[0]] + " " + p[1].toFixed(2); }).join(", ") +
      ". Average of " + hit.cell.count + " activation" + (hit.cell.count === 1 ? "" : "s") + ".";
  };

  Viewer.prototype.showTooltip = function (hit, sx, sy) {
    var tip = this.tooltip;
    if (!hit || !hit.cell) { tip.hidden = true; return; }
    tip.textContent = "";
    var list = document.createElement("ol"), classes = this.classes;
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
    tip.appendChild(list);
    var codes = this.classCodes(hit.level);
    if (codes) {
      var filtered = document.createElement("p");
      filtered.className = "filtered-score";
      filtered.textContent = classes[this.filter.cls] + ": " + (codes.codes[hit.index] / 127 * codes.scale).toFixed(3);
      tip.appendChild(filtered);
    }
    var foot = document.createElement("p");
    foot.textContent = "Average of " + hit.cell.count + " activation" + (hit.cell.count === 1 ? "" : "s");
    tip.appendChild(foot);
    tip.hidden = false;
    var left = Math.min(sx + 16, this.width - tip.offsetWidth - 4);
    var top = Math.min(sy + 16, this.height - tip.offsetHeight - 4);
    tip.style.left = Math.max(4, left) + "px";
    tip.style.top = Math.max(4, top) + "px";
  };

  Viewer.prototype.moveCursor = function (dx, dy) {
    var size = this.atlas.level_data[this.levelIndex()].size;
    var x = Math.min(size - 1, Math.max(0, Math.floor(this.view.cx * size) + dx));
    var y = Math.min(size - 1, Math.max(0, Math.floor(this.view.cy * size) + dy));
    this.view.cx = (x + 0.5) / size;
    this.view.cy = (y + 0.5) / size;
    this.cursorOn = true;
    this.changed();
    this.announceCursor();
  };

  Viewer.prototype.announceCursor = function () {
    var hit = this.cursor();
    if (!hit) return;
    var screen = this.toScreen((hit.x + 0.5) / hit.size, (hit.y + 0.5) / hit.size);
    this.showTooltip(hit, screen[0], screen[1]);
    if (this.announcer) this.announcer.textContent = this.describe(hit);
  };

  // --- changes of view ---------------------------------------------------------------------

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

  Viewer.prototype.changed = function (quiet) {
    this.draw();
    if (!this.atlas) return;
    var view = this.viewString();
    if (this.ownsHash && !quiet && window.history && history.replaceState) history.replaceState(null, "", "#" + view);
    var page = this.mode === "explorer" ? window.location.href.split("#")[0] :
      new URL(this.root.getAttribute("data-root") + "explore/" + this.atlas.id + ".html", window.location.href).href;
    var embed = new URL(this.root.getAttribute("data-root") + "embed.html", window.location.href).href;
    var link = this.root.querySelector(".share-link"), code = this.root.querySelector(".embed-code");
    if (link) link.value = page + "#" + view;
    if (code) {
      code.value = '<iframe src="' + attr(embed + "#" + view) + '" title="' + attr("Activation atlas of layer " +
        this.atlas.layer) + '" width="100%" height="480" style="border: 0" loading="lazy" allowfullscreen></iframe>';
    }
  };

  function copy(field, button) {
    field.select();
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { if (document.execCommand("copy")) done(); });
    } else if (document.execCommand("copy")) {
      done();
    }
  }

  Viewer.prototype.bind = function () {
    var self = this, frame = this.frame, root = this.root;
    window.addEventListener("resize", function () { self.resize(); });
    if (this.ownsHash) {
      window.addEventListener("hashchange", function () {
        var v = parseView(window.location.hash);
        if (v.layer && v.layer !== self.atlas.id) self.open(v.layer, v);
        else { self.applyView(v); self.draw(); }
      });
    }
    frame.addEventListener("wheel", function (e) {
      // In an article, the page scrolls past an inline atlas unless the reader is using it.
      if (self.mode === "inline" && !e.ctrlKey && document.activeElement !== frame) return;
      e.preventDefault();
      var r = frame.getBoundingClientRect();
      self.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });

    // One pointer drags; two pinch, zooming about their midpoint.
    function spread() {
      var ps = Object.keys(self.pointers).map(function (k) { return self.pointers[k]; });
      if (ps.length < 2) return null;
      return { d: Math.hypot(ps[0].x - ps[1].x, ps[0].y - ps[1].y), x: (ps[0].x + ps[1].x) / 2, y: (ps[0].y + ps[1].y) / 2 };
    }
    frame.addEventListener("pointerdown", function (e) {
      if (e.target === self.minimap) return;
      self.cursorOn = false;
      self.pointers[e.pointerId] = { x: e.clientX, y: e.clientY };
      try { frame.setPointerCapture(e.pointerId); } catch (err) { /* synthetic pointers */ }
    });
    function lift(e) { delete self.pointers[e.pointerId]; }
    frame.addEventListener("pointerup", lift);
    frame.addEventListener("pointercancel", lift);
    frame.addEventListener("pointermove", function (e) {
      var r = frame.getBoundingClientRect(), p = self.pointers[e.pointerId];
      if (p) {
        var before = spread();
        var dx = e.clientX - p.x, dy = e.clientY - p.y;
        p.x = e.clientX;
        p.y = e.clientY;
        var after = spread();
        if (before && after) {
          self.zoomAt(after.d / Math.max(1, before.d), after.x - r.left, after.y - r.top);
          self.pan(after.x - before.x, after.y - before.y);
        } else {
          self.pan(dx, dy);
        }
      }
      if (!self.atlas) return;
      var a = self.toAtlas(e.clientX - r.left, e.clientY - r.top);
      var hit = self.cellAtAtlas(a[0], a[1]);
      self.hover = hit && hit.cell ? hit : null;
      self.showTooltip(self.hover, e.clientX - r.left, e.clientY - r.top);
      self.draw();
    });
    frame.addEventListener("pointerleave", function () {
      self.hover = null;
      if (!self.cursorOn) self.tooltip.hidden = true;
      self.draw();
    });
    frame.addEventListener("blur", function () {
      self.cursorOn = false;
      self.tooltip.hidden = true;
      self.draw();
    });
    frame.addEventListener("keydown", function (e) {
      if (!self.atlas) return;
      var centre = function (f) { return function () { self.zoomAt(f, self.width / 2, self.height / 2); self.announceCursor(); }; };
      var keys = {
        ArrowLeft: function () { self.moveCursor(-1, 0); }, ArrowRight: function () { self.moveCursor(1, 0); },
        ArrowUp: function () { self.moveCursor(0, -1); }, ArrowDown: function () { self.moveCursor(0, 1); },
        "+": centre(1.5), "=": centre(1.5), "-": centre(1 / 1.5),
        "0": function () { self.view = { cx: 0.5, cy: 0.5, z: 1 }; self.changed(); self.announceCursor(); }
      };
      if (keys[e.key] && !e.altKey && !e.ctrlKey && !e.metaKey) {
        e.preventDefault();
        self.cursorOn = true;
        keys[e.key]();
      }
    });

    // The minimap: press or drag to move the view there.
    var map = this.minimap, dragging = false;
    function jump(e) {
      var r = map.getBoundingClientRect();
      self.view.cx = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
      self.view.cy = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
      self.changed();
    }
    if (map) {
      map.addEventListener("pointerdown", function (e) {
        e.stopPropagation();
        dragging = true;
        try { map.setPointerCapture(e.pointerId); } catch (err) { /* synthetic pointers */ }
        jump(e);
      });
      map.addEventListener("pointermove", function (e) { if (dragging) { e.stopPropagation(); jump(e); } });
      map.addEventListener("pointerup", function () { dragging = false; });
      map.addEventListener("pointercancel", function () { dragging = false; });
    }

    root.querySelectorAll(".layer-switch button").forEach(function (button) {
      button.addEventListener("click", function () {
        var id = button.getAttribute("data-layer");
        if (self.atlas && id !== self.atlas.id) {
          self.open(id, { "class": self.filter.cls >= 0 ? self.classes[self.filter.cls] : undefined,
            sign: self.filter.sign < 0 ? "-" : "+" });
          self.hover = null;
          self.tooltip.hidden = true;
        }
      });
    });
    if (this.search) {
      var choose = function () {
        var cls = self.findClass(self.search.value);
        if (!self.search.value.trim()) self.setClass(-1);
        else if (cls >= 0) { self.setClass(cls); self.search.value = self.classes[cls]; }
        else if (self.readout) self.readout.textContent = "No class matches “" + self.search.value + "”";
      };
      this.search.addEventListener("change", choose);
      this.search.addEventListener("search", choose);
      this.search.addEventListener("keydown", function (e) { if (e.key === "Enter") choose(); });
    }
    if (this.signButton) {
      this.signButton.addEventListener("click", function () {
        self.filter.sign = -self.filter.sign;
        self.setClass(self.filter.cls);
      });
    }
    var share = root.querySelector(".share");
    if (share) {
      share.querySelector(".copy-link").addEventListener("click", function () {
        copy(share.querySelector(".share-link"), this);
      });
      share.querySelector(".copy-embed").addEventListener("click", function () {
        copy(share.querySelector(".embed-code"), this);
      });
    }
    if (window.ResizeObserver) new ResizeObserver(function () { self.resize(); }).observe(frame);
  };

  document.querySelectorAll(".atlas-viewer[data-atlas]").forEach(function (el) {
    el.viewer = new Viewer(el);
  });
})();
