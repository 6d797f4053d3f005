/* Activation atlas viewer: a canvas that pans and zooms across grid levels.
 *
 * One classic script, since pages opened from file:// cannot load ES modules. Its parts:
 *   Hash      the view's text form, the URL hash "layer=..&x=..&y=..&z=..&class=..&sign=-"; the only
 *             code that reads or writes it (shortcodes hand their view over as JSON in data-view)
 *   Loader    data scripts and tile images; only ids listed by the page reach a script URL, and only
 *             paths of the site's data folder's form
 *   ViewState the view (centre cx, cy and zoom z) with its one setter, which clamps
 *   Renderer  draws at most once per animation frame
 *   Card, ClassFilter, Share: the parts of the interface around the canvas
 *   IconMask  with masks in the build (icons.mask), icons cut by their importance masks, "<tile>-mask.webp"
 *   LinkedLayers the viewers of one linked figure tell each other the cell under the reader, and draw
 *             where its image positions fall in their own layer ("<id>/links-<n>-<other id>")
 *   bindInput pointer, touch, wheel and keys
 * Data come as scripts that register in window.ATLAS_DATA (generator/tiles.py and regions.py,
 * schema 4): "<id>" the atlas and class names; every other script under its path without ".js":
 * a level's cells, for a large level one script per region of tiles ("level-<n>-<rx>-<ry>"), the
 * cells' attribution to a chunk of classes (per region too for a large level), and each class's
 * strongest cells at every level ("strongest-<k>"). A large level is drawn region by region as
 * its scripts arrive: those in view first, then those around it. <script> elements load from
 * file://, where fetch() is blocked, so one code path serves disk and web.
 * Coordinates: the atlas is the unit square, x right, y down; z = 1 fits it in the canvas.
 */
(function () {
  "use strict";
  var SCHEMA = 4;
  var MIN_CELL_PX = 44; // a finer level is shown once its cells are at least this wide
  var MAX_ICON_ZOOM = 3; // the finest level's cells grow to at most this many times their icon's pixels
  var FADED = 0.07; // opacity of icons with no attribution to the filtered class
  var TAP_PX = 8, TAP_MS = 600; // a press that moves less, for less long, is a tap
  var URL_DELAY_MS = 250; // the address is written once the view rests
  var DATA = window.ATLAS_DATA = window.ATLAS_DATA || {};
  var count = 0;

  // --- the view as text ----------------------------------------------------------------------

  var Hash = {
    // Text ("#layer=..&x=..") to a view object whose fields are strings, as the shortcodes write them too.
    parse: function (text) {
      var view = {};
      (text || "").replace(/^#/, "").split("&").forEach(function (part) {
        var i = part.indexOf("=");
        if (i > 0) {
          try { view[part.slice(0, i)] = decodeURIComponent(part.slice(i + 1)); } catch (e) { /* a bad escape */ }
        }
      });
      return view;
    },
    // A view ({layer, cx, cy, z, className, sign, pin, trust, labels, mask}) as text; the one place it is
    // written. `pin`, a pinned cell as {size, x, y} or null, is "cell=<level size>-<x>-<y>"; the trust overlay
    // "trust=1"; region names, drawn unless "labels=0"; icons cut by their masks, where there are any,
    // unless "mask=0".
    format: function (v) {
      var text = "layer=" + encodeURIComponent(v.layer) + "&x=" + v.cx.toFixed(4) + "&y=" + v.cy.toFixed(4) +
        "&z=" + v.z.toFixed(3);
      if (v.className !== null) text += "&class=" + encodeURIComponent(v.className) + (v.sign < 0 ? "&sign=-" : "");
      if (v.pin) text += "&cell=" + v.pin.size + "-" + v.pin.x + "-" + v.pin.y;
      if (v.trust) text += "&trust=1";
      if (!v.labels) text += "&labels=0";
      if (v.mask === false) text += "&mask=0";
      return text;
    },
    // "<size>-<x>-<y>" to {size, x, y}, or null.
    cell: function (text) {
      var m = /^(\d{1,4})-(\d{1,4})-(\d{1,4})$/.exec(text || "");
      return m ? { size: +m[1], x: +m[2], y: +m[3] } : null;
    }
  };

  function attr(text) {
    return String(text).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }

  // --- loading -------------------------------------------------------------------------------

  function Loader(base, ids, onImage) {
    this.base = base;
    this.ids = ids; // the atlas ids the page was built with: nothing else may name a script
    this.onImage = onImage;
    this.images = {};
    this.requested = [];
    this.waiting = {};
  }

  Loader.prototype.knows = function (id) { return this.ids.indexOf(id) >= 0; };

  // A data script, by its path under data/; `done(payload or null)`.
  Loader.prototype.script = function (key, path, done) {
    if (DATA[key]) { done(DATA[key]); return; }
    if (this.waiting[key]) { this.waiting[key].push(done); return; }
    if (!/^[A-Za-z0-9_-]+\/[A-Za-z0-9_.-]+\.js$/.test(path) || path.indexOf("..") >= 0) { done(null); return; }
    var waiting = this.waiting, node = document.createElement("script");
    waiting[key] = [done];
    node.src = this.base + path;
    node.onload = node.onerror = function () {
      var calls = waiting[key];
      delete waiting[key];
      calls.forEach(function (call) { call(DATA[key] || null); });
    };
    document.head.appendChild(node);
  };

  Loader.prototype.atlas = function (id, done) {
    if (!this.knows(id)) { done(null); return; }
    this.script(id, id + "/atlas.js", done);
  };

  // Any other data script, which registers under its path without ".js".
  Loader.prototype.data = function (path, done) {
    this.script(String(path).replace(/\.js$/, ""), path, done);
  };

  // A file of one region ("<rx>-<ry>") of a level, from the level's pattern; a one-file level's has no {region}.
  function regionPath(pattern, region, chunk) {
    return pattern.replace("{region}", region).replace("{chunk}", chunk === undefined ? "" : String(chunk));
  }

  function holds(level, region) { return /^\d+-\d+$/.test(region) && level.regions.indexOf(region) >= 0; }

  // The cells script of `region` of `level`, if the level lists the region; `done(payload or null)`.
  Loader.prototype.region = function (level, region, done) {
    if (!holds(level, region)) { done(null); return; }
    this.data(regionPath(level.cells_script, region), done);
  };

  Loader.prototype.image = function (path) {
    var img = this.images[path];
    if (!img) {
      img = this.images[path] = new Image();
      img.onload = this.onImage;
      img.src = this.base + path;
      this.requested.push(path);
    }
    return img;
  };

  function ready(img) { return img && img.complete && img.naturalWidth > 0; }

  // --- the view ------------------------------------------------------------------------------

  // The centre stays over the atlas and the zoom between 1 and the finest level's limit.
  function ViewState(onChange) {
    this.cx = 0.5; this.cy = 0.5; this.z = 1;
    this.zMax = 64;
    this.onChange = onChange;
  }

  ViewState.prototype.set = function (v) {
    var cx = clamp(isFinite(v.cx) ? +v.cx : this.cx, 0, 1), cy = clamp(isFinite(v.cy) ? +v.cy : this.cy, 0, 1);
    var z = clamp(isFinite(v.z) && v.z > 0 ? +v.z : this.z, 1, this.zMax);
    var capped = isFinite(v.z) && v.z > this.zMax + 1e-9;
    if (cx === this.cx && cy === this.cy && z === this.z) { if (capped) this.onChange(capped); return; }
    this.cx = cx; this.cy = cy; this.z = z;
    this.onChange(capped);
  };

  ViewState.prototype.value = function () { return { cx: this.cx, cy: this.cy, z: this.z }; };

  function Renderer(draw) {
    this.pending = false;
    this.draw = draw;
  }

  Renderer.prototype.request = function () {
    if (this.pending) return;
    this.pending = true;
    var self = this;
    window.requestAnimationFrame(function () { self.pending = false; self.draw(); });
  };

  // --- the viewer ----------------------------------------------------------------------------

  function Viewer(root) {
    this.root = root;
    this.id = ++count;
    this.mode = root.getAttribute("data-mode") || "explorer";
    this.ownsHash = this.mode !== "inline";
    this.siteRoot = root.getAttribute("data-root") || "";
    this.frame = root.querySelector(".viewer");
    this.canvas = root.querySelector(".atlas-canvas");
    this.ctx = this.canvas.getContext("2d");
    this.minimap = root.querySelector(".minimap");
    this.readout = root.querySelector(".level-readout");
    this.announcer = root.querySelector(".announce");
    this.filter = { cls: -1, sign: 1 };
    this.firstPaint = null;
    this.width = 0;
    this.height = 0;
    this.capped = false;
    var ids = [];
    try { ids = JSON.parse(root.getAttribute("data-atlases") || "[]"); } catch (e) { /* none */ }
    var viewer = this;
    this.loader = new Loader(this.siteRoot + "data/", ids, function () { viewer.renderer.request(); });
    this.renderer = new Renderer(function () { viewer.draw(); });
    this.state = new ViewState(function (capped) { viewer.viewChanged(capped); });
    this.card = new Card(this);
    this.classFilter = new ClassFilter(this);
    this.share = new Share(this);
    this.trust = new TrustOverlay(this);
    this.names = new RegionNames(this);
    this.links = new LinkedLayers(this);
    this.mask = new IconMask(this);
    // The explorer fills the screen, so a finger there always moves the atlas; elsewhere the page scrolls
    // under a finger until the reader taps the atlas.
    this.setActive(this.mode === "explorer");
    var caption = root.querySelector(".caption");
    if (caption) {
      caption.id = "atlas-caption-" + this.id;
      this.frame.setAttribute("aria-describedby", caption.id);
    }
    var start = {};
    try { start = JSON.parse(root.getAttribute("data-view") || "{}"); } catch (e) { /* the default view */ }
    var hash = Hash.parse(window.location.hash);
    if (this.ownsHash && (hash.layer || hash.x)) start = hash;
    var first = this.loader.knows(start.layer) ? start.layer : root.getAttribute("data-atlas");
    bindInput(this);
    // An atlas in an article loads when the reader comes near it, not with the page.
    if (this.mode === "inline" && window.IntersectionObserver) {
      var watch = new IntersectionObserver(function (entries) {
        if (!entries.some(function (e) { return e.isIntersecting; })) return;
        watch.disconnect();
        viewer.open(first, start);
      }, { rootMargin: "300px 0px" });
      watch.observe(root);
    } else {
      this.open(first, start);
    }
  }

  Object.defineProperty(Viewer.prototype, "view", { get: function () { return this.state.value(); } });

  Viewer.prototype.setView = function (v) { this.state.set(v); };

  // A view object ({x, y, z, class, sign}, strings or numbers) from the hash or a shortcode; what it leaves
  // out is the whole atlas, unfiltered.
  Viewer.prototype.applyView = function (v) {
    var x = parseFloat(v.x), y = parseFloat(v.y), z = parseFloat(v.z);
    this.state.set({ cx: isFinite(x) ? x : 0.5, cy: isFinite(y) ? y : 0.5, z: isFinite(z) ? z : 1 });
    this.filter.sign = v.sign === "-" ? -1 : 1;
    this.classFilter.choose(v["class"] !== undefined ? this.classFilter.exact(v["class"]) : -1, true);
    this.trust.set(v.trust === "1", true);
    this.names.set(v.labels !== "0", true);
    this.mask.set(v.mask !== "0", true);
    var pin = Hash.cell(v.cell), levels = this.atlas.level_data;
    for (var i = 0; pin && i < levels.length; i++) {
      if (levels[i].size === pin.size && pin.x < pin.size && pin.y < pin.size) {
        // A pin without a view of its own (a shortcode's finding) opens on its cell, at its level.
        if (!isFinite(z)) {
          this.state.set({ cx: (pin.x + 0.5) / pin.size, cy: (pin.y + 0.5) / pin.size, z: this.zoomFor(i) });
        }
        this.card.pinWhenLoaded({ level: i, size: pin.size, x: pin.x, y: pin.y });
      }
    }
  };

  Viewer.prototype.open = function (id, start) {
    var self = this, fallback = this.root.getAttribute("data-atlas");
    this.loader.atlas(id, function (payload) {
      if (!payload || payload.schema !== SCHEMA) {
        if (id !== fallback) { self.open(fallback, {}); return; }
        self.frame.textContent = "The atlas data did not load (data/" + id + "/atlas.js).";
        return;
      }
      var switched = self.atlas && self.atlas.id !== id;
      self.payload = payload;
      self.atlas = payload.atlas;
      self.classes = payload.classes;
      self.cells = [];
      self.card.close();
      self.names.load();
      self.overview = self.loader.image(self.atlas.overview);
      // The switch offers the atlases of this one's group: the layers', or the class atlases and comparisons.
      var group = self.atlas.kind === "layer" || !self.atlas.kind ? "layer" : "class";
      self.root.querySelectorAll(".layer-switch button").forEach(function (b) {
        b.setAttribute("aria-pressed", b.getAttribute("data-layer") === id ? "true" : "false");
        b.hidden = (b.getAttribute("data-group") || "layer") !== group;
      });
      self.showAxis();
      var link = self.root.querySelector(".open-explorer");
      if (link) link.setAttribute("href", self.siteRoot + "explore/" + id + ".html");
      self.frame.setAttribute("aria-label", (self.root.getAttribute("data-alt") ||
        self.atlas.title) + ". Arrow keys move between cells, plus and minus zoom, " +
        "0 resets the view, Escape closes the card.");
      self.resize();
      self.applyView(start || {});
      if (switched || id !== fallback) self.syncPage();
      if (switched) { self.say(self.atlas.title); self.writeAddress(true); }
      self.viewChanged(false, true);
    });
  };

  // A comparison's x is the attribution difference: the legend names the class each side leans to. A model
  // that does not read RGB has its icons drawn through a colour map, which a legend reads from low to high.
  Viewer.prototype.showAxis = function () {
    var axis = this.root.querySelector(".compare-axis"), atlas = this.atlas;
    var colours = this.root.querySelector(".colour-legend");
    if (colours) colours.hidden = !atlas.colour_map;
    if (!axis) return;
    axis.hidden = atlas.kind !== "compare";
    if (axis.hidden) return;
    axis.querySelector(".axis-b").textContent = "\u2190 more " + atlas.class_names[1];
    axis.querySelector(".axis-a").textContent = "more " + atlas.class_names[0] + " \u2192";
  };

  // When the atlas shown is not the one the page was made for: the page says which atlas it shows,
  // as a fresh load of that atlas's page would.
  Viewer.prototype.syncPage = function () {
    var atlas = this.atlas;
    if (this.mode === "inline") return;
    if (this.mode === "explorer") {
      document.title = atlas.title + " \u00b7 " + (document.body.getAttribute("data-site-title") || "");
      document.querySelectorAll(".site-header nav a[data-atlas]").forEach(function (a) {
        if (a.getAttribute("data-atlas") === atlas.id) a.setAttribute("aria-current", "page");
        else a.removeAttribute("aria-current");
      });
    }
    var heading = document.querySelector("main h1");
    if (heading) heading.textContent = atlas.title;
  };

  Viewer.prototype.viewString = function () {
    var cls = this.filter.cls;
    var pin = this.card.pinned;
    return Hash.format({ layer: this.atlas.id, cx: this.state.cx, cy: this.state.cy, z: this.state.z,
      className: cls >= 0 ? this.classes[cls] : null, sign: this.filter.sign,
      pin: pin ? { size: pin.size, x: pin.x, y: pin.y } : null, trust: this.trust.on, labels: this.names.on,
      mask: this.mask.on });
  };

  // The address: the hash holds the view; over http(s) the path follows a layer switch too.
  Viewer.prototype.writeAddress = function (now) {
    var self = this;
    clearTimeout(this.addressTimer);
    if (!this.ownsHash || !this.atlas) return;
    var write = function () {
      var hash = "#" + self.viewString();
      var target = hash;
      if (self.mode === "explorer" && /^https?:$/.test(window.location.protocol)) target = self.atlas.id + ".html" + hash;
      if (window.location.hash === hash && (target === hash || window.location.pathname.split("/").pop() === self.atlas.id + ".html")) return;
      try { history.replaceState(null, "", target); } catch (e) {
        try { history.replaceState(null, "", hash); } catch (e2) { /* history refused */ }
      }
    };
    if (now) write(); else this.addressTimer = setTimeout(write, URL_DELAY_MS);
  };

  Viewer.prototype.viewChanged = function (capped, quiet) {
    if (capped && !this.capped) this.say("Zoomed in as far as the finest grid allows.");
    this.capped = capped || (this.atlas && this.state.z >= this.state.zMax - 1e-6 && this.state.zMax > 1);
    this.renderer.request();
    if (!this.atlas) return;
    if (!quiet) this.writeAddress(false);
    this.share.refresh();
    this.classFilter.refreshStrongest();
  };

  Viewer.prototype.setActive = function (on) {
    this.active = on;
    this.root.classList.toggle("active", on);
  };

  Viewer.prototype.say = function (text) {
    if (!this.announcer) return;
    // The same words twice are announced twice only if the region changes in between.
    this.announcer.textContent = this.announcer.textContent === text ? text + "\u00a0" : text;
  };

  // --- data ----------------------------------------------------------------------------------

  // The cells of `region` of level `index`, decoded once: {x, y, count, fidelity, top: [[class, score], ...],
  // region, i (its place in the region's list)}; null while the region loads, which this asks for.
  // this.cells[index].at finds every loaded cell of the level by place.
  Viewer.prototype.regionCells = function (index, region) {
    var have = this.cells[index];
    if (have && have.regions[region]) return have.regions[region];
    var self = this, atlas = this.atlas, level = atlas.level_data[index];
    this.loader.region(level, region, function (data) {
      if (!data || self.atlas !== atlas) return;
      var cells = self.cells[index] = self.cells[index] || { regions: {}, at: {} };
      if (cells.regions[region]) return;
      cells.regions[region] = data.cells.map(function (c, i) {
        var top = [];
        for (var k = 0; k < c[4].length; k += 2) top.push([c[4][k], c[4][k + 1]]);
        var cell = { x: c[0], y: c[1], count: c[2], fidelity: c[3], top: top, trust: c[5], region: region, i: i };
        cells.at[cell.x + "," + cell.y] = cell; // every cell's tile exists, so tiles need no lookup
        return cell;
      });
      self.renderer.request();
      self.card.regionArrived(index, region);
    });
    return null;
  };

  Viewer.prototype.regionOf = function (level, x, y) {
    var side = level.region_cells;
    return Math.floor(x / side) + "-" + Math.floor(y / side);
  };

  // The regions of level `index` that hold cells, over columns x0..x1 and rows y0..y1 (ends excluded).
  Viewer.prototype.regionsIn = function (index, x0, y0, x1, y1) {
    var level = this.atlas.level_data[index], side = level.region_cells, found = [];
    x0 = Math.max(0, x0); y0 = Math.max(0, y0); x1 = Math.min(level.size, x1); y1 = Math.min(level.size, y1);
    if (x0 >= x1 || y0 >= y1) return found;
    for (var ry = Math.floor(y0 / side); ry * side < y1; ry++) {
      for (var rx = Math.floor(x0 / side); rx * side < x1; rx++) {
        if (holds(level, rx + "-" + ry)) found.push(rx + "-" + ry);
      }
    }
    return found;
  };

  // --- geometry ------------------------------------------------------------------------------

  Viewer.prototype.scale = function (z) {
    return Math.min(this.width, this.height) * 0.96 * (z || this.state.z); // a small margin at z = 1
  };

  Viewer.prototype.levelIndex = function (z) {
    var scale = this.scale(z), chosen = 0;
    this.atlas.level_data.forEach(function (level, i) {
      if (scale / level.size >= MIN_CELL_PX) chosen = i;
    });
    return chosen;
  };

  // The smallest zoom that shows level `index`.
  Viewer.prototype.zoomFor = function (index) {
    var size = this.atlas.level_data[index].size;
    return clamp(MIN_CELL_PX * size / this.scale(1) * 1.15, 1, this.state.zMax);
  };

  Viewer.prototype.toScreen = function (ax, ay) {
    var s = this.scale();
    return [(ax - this.state.cx) * s + this.width / 2, (ay - this.state.cy) * s + this.height / 2];
  };

  Viewer.prototype.toAtlas = function (sx, sy) {
    var s = this.scale();
    return [(sx - this.width / 2) / s + this.state.cx, (sy - this.height / 2) / s + this.state.cy];
  };

  // The cell of level `index` at atlas point (ax, ay): null while its region loads, cell null where none is.
  Viewer.prototype.cellAt = function (ax, ay, index) {
    if (index === undefined) index = this.levelIndex();
    var level = this.atlas.level_data[index];
    var x = Math.floor(ax * level.size), y = Math.floor(ay * level.size);
    if (x < 0 || y < 0 || x >= level.size || y >= level.size) return null;
    var region = this.regionOf(level, x, y), hit = { level: index, size: level.size, x: x, y: y, cell: null };
    if (!holds(level, region)) return hit;
    if (!this.regionCells(index, region)) return null;
    hit.cell = this.cells[index].at[x + "," + y] || null;
    return hit;
  };

  Viewer.prototype.cellAtScreen = function (clientX, clientY) {
    var r = this.frame.getBoundingClientRect(), a = this.toAtlas(clientX - r.left, clientY - r.top);
    return this.cellAt(a[0], a[1]);
  };

  Viewer.prototype.resize = function () {
    if (!this.atlas) return;
    var rect = this.frame.getBoundingClientRect(), ratio = window.devicePixelRatio || 1;
    var width = Math.max(1, rect.width), height = Math.max(1, rect.height);
    this.narrow = width < 480;
    if (width !== this.width || height !== this.height || this.canvas.width !== Math.round(width * ratio)) {
      this.width = width;
      this.height = height;
      this.canvas.width = Math.round(width * ratio);
      this.canvas.height = Math.round(height * ratio);
    }
    var levels = this.atlas.level_data, finest = levels[levels.length - 1];
    this.state.zMax = Math.max(1, MAX_ICON_ZOOM * this.atlas.icon_px * finest.size / this.scale(1));
    this.state.set({});
    this.renderer.request();
  };

  // --- drawing -------------------------------------------------------------------------------

  Viewer.prototype.draw = function () {
    if (!this.width || !this.atlas) return;
    var ctx = this.ctx, s = this.scale(), atlas = this.atlas, ratio = this.canvas.width / this.width;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    var corner = this.toScreen(0, 0);
    var index = this.levelIndex(), level = atlas.level_data[index], self = this;
    var cellPx = s / level.size, icon = atlas.icon_px, span = level.tile_cells, side = level.region_cells;
    var x0 = Math.max(0, Math.floor(-corner[0] / cellPx)), y0 = Math.max(0, Math.floor(-corner[1] / cellPx));
    var x1 = Math.min(level.size, Math.ceil((this.width - corner[0]) / cellPx));
    var y1 = Math.min(level.size, Math.ceil((this.height - corner[1]) / cellPx));
    // The regions in view first, then those around them, so that a pan finds its cells there already.
    var loading = false, scoring = false, filtered = this.filter.cls >= 0, codes = {}, visible = [], x, y;
    this.regionsIn(index, x0, y0, x1, y1).forEach(function (region) {
      if (!self.regionCells(index, region)) loading = true;
      else if (filtered && !(codes[region] = self.classFilter.codes(index, region))) scoring = true;
    });
    this.regionsIn(index, x0 - side, y0 - side, x1 + side, y1 + side).forEach(function (region) {
      self.regionCells(index, region);
    });
    var cells = this.cells[index];
    if (cells) {
      for (y = y0; y < y1; y++) {
        for (x = x0; x < x1; x++) {
          var cell = cells.at[x + "," + y];
          if (!cell) continue;
          var tile = Math.floor(x / span) + "-" + Math.floor(y / span);
          var img = this.mask.source(atlas.id + "/" + level.size + "-" + tile + ".webp");
          if (!img) loading = true;
          visible.push([cell, img]);
        }
      }
    }
    if (loading && ready(this.overview)) {
      ctx.drawImage(this.overview, corner[0], corner[1], s, s); // a small picture first, icons as they arrive
      this.painted();
    }
    var maxCount = level.max_count || 1, gap = cellPx > 24 ? 1 : 0, sign = this.filter.sign;
    visible.forEach(function (v) {
      var cell = v[0], img = v[1], own = codes[cell.region];
      if (!img) return;
      // Icons sized by density: a cell of many activations fills its square, a sparse one less.
      var side = (cellPx - 2 * gap) * (0.45 + 0.55 * Math.sqrt(cell.count / maxCount));
      var left = corner[0] + (cell.x + 0.5) * cellPx - side / 2, top = corner[1] + (cell.y + 0.5) * cellPx - side / 2;
      // Codes are the square root of the score on the atlas's common scale: opacity follows them directly.
      ctx.globalAlpha = own ? FADED + (1 - FADED) * Math.max(0, sign * own[cell.i] / 127) : 1;
      ctx.drawImage(img, (cell.x % span) * icon, (cell.y % span) * icon, icon, icon, left, top, side, side);
    });
    ctx.globalAlpha = 1;
    this.trust.draw(ctx, visible, corner, cellPx);
    this.names.draw(ctx, level, corner, cellPx);
    this.links.draw(ctx, corner, s);
    if (visible.length && !loading) this.painted();
    var marks = [[this.card.hover, "#111"], [this.card.pinned, "#d93025"], [this.cursorOn ? this.cursor() : null, "#1a5fb4"]];
    marks.forEach(function (mark) {
      var hit = mark[0];
      if (!hit || hit.level !== index) return;
      ctx.strokeStyle = mark[1];
      ctx.lineWidth = 2;
      ctx.strokeRect(corner[0] + hit.x * cellPx + 1, corner[1] + hit.y * cellPx + 1, cellPx - 2, cellPx - 2);
    });
    this.drawMinimap();
    this.links.send();
    this.loading = loading || scoring; // tests and tools wait on this: cells, tiles and class codes in view
    this.setReadout(level, this.loading);
    this.card.place();
  };

  Viewer.prototype.painted = function () {
    if (this.firstPaint === null) this.firstPaint = performance.now();
  };

  Viewer.prototype.drawMinimap = function () {
    var map = this.minimap;
    if (!map) return;
    var show = this.state.z > 1.05;
    map.hidden = !show;
    if (!show) return;
    var size = map.clientWidth || 112, ratio = window.devicePixelRatio || 1, ctx = map.getContext("2d");
    if (map.width !== Math.round(size * ratio)) { map.width = map.height = Math.round(size * ratio); }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, size, size);
    if (ready(this.overview)) ctx.drawImage(this.overview, 0, 0, size, size);
    var a = this.toAtlas(0, 0), b = this.toAtlas(this.width, this.height);
    ctx.strokeStyle = "#d93025";
    ctx.lineWidth = 2;
    ctx.strokeRect(a[0] * size, a[1] * size, (b[0] - a[0]) * size, (b[1] - a[1]) * size);
  };

  Viewer.prototype.setReadout = function (level, loading) {
    var text = level.size + " × " + level.size + " grid, zoom " + this.state.z.toFixed(1) + "×" +
      (this.capped ? " (the finest grid's limit)" : "") + (loading ? " (loading…)" : "");
    if (this.readout && this.readout.textContent !== text) this.readout.textContent = text;
  };

  Viewer.prototype.cursor = function () {
    return this.cellAt(this.state.cx, this.state.cy);
  };

  Viewer.prototype.moveCursor = function (dx, dy) {
    var size = this.atlas.level_data[this.levelIndex()].size;
    var x = clamp(Math.floor(this.state.cx * size) + dx, 0, size - 1);
    var y = clamp(Math.floor(this.state.cy * size) + dy, 0, size - 1);
    this.cursorOn = true;
    this.state.set({ cx: (x + 0.5) / size, cy: (y + 0.5) / size });
    this.card.showCursor();
  };

  Viewer.prototype.zoomAt = function (factor, sx, sy) {
    var before = this.toAtlas(sx, sy), z = this.state.z * factor;
    var zz = clamp(z, 1, this.state.zMax), s = this.scale(zz);
    // Keep the atlas point under (sx, sy) where it is.
    this.state.set({ cx: before[0] - (sx - this.width / 2) / s, cy: before[1] - (sy - this.height / 2) / s, z: z });
  };

  Viewer.prototype.pan = function (dx, dy) {
    var s = this.scale();
    this.state.set({ cx: this.state.cx - dx / s, cy: this.state.cy - dy / s });
  };

  // Centre cell {level, size, x, y} and pin its card, once its region has arrived.
  Viewer.prototype.flyTo = function (hit) {
    var z = Math.max(this.state.z, this.zoomFor(hit.level));
    this.state.set({ cx: (hit.x + 0.5) / hit.size, cy: (hit.y + 0.5) / hit.size, z: z });
    this.card.pinWhenLoaded(hit);
  };

  // --- the card: a cell's classes, count and fidelity -----------------------------------------

  function Card(viewer) {
    var self = this;
    this.viewer = viewer;
    this.node = viewer.root.querySelector(".tooltip");
    // A tap on a pinned card puts it away: on a phone it lies over the cells below it. Only a press
    // that began on the card counts: the click of the tap that pinned it lands on it too.
    var pressed = false;
    this.node.addEventListener("pointerdown", function () { pressed = true; });
    this.node.addEventListener("click", function (e) {
      var mine = pressed;
      pressed = false;
      if (mine && self.pinned && !e.target.closest("button, a")) { self.close(); viewer.frame.focus(); }
    });
    this.hover = null; // the cell under a mouse
    this.pinned = null; // a tapped, clicked or flown-to cell, until closed
    this.wanted = null; // a flown-to cell whose region is still loading
  }

  Card.prototype.fill = function (hit, closable) {
    var v = this.viewer, node = this.node, classes = v.classes;
    node.textContent = "";
    if (closable) {
      var close = el("button", "card-close", "×");
      close.type = "button";
      close.setAttribute("aria-label", "Close the card");
      var card = this;
      close.addEventListener("click", function (e) { e.stopPropagation(); card.close(); v.frame.focus(); });
      node.appendChild(close);
    }
    var summary = "Average of " + hit.cell.count + " activation" + (hit.cell.count === 1 ? "" : "s") +
      "; icon fidelity " + hit.cell.fidelity.toFixed(2);
    if (closable) { // the pinned panel: the icon at its own size first
      var head = node.appendChild(el("div", "card-head"));
      head.appendChild(this.icon(hit));
      head.appendChild(el("p", "", summary));
    }
    node.appendChild(el("p", "card-title", "Strongest classes (mean attribution)"));
    var list = el("ol"), peak = Math.max.apply(null, hit.cell.top.map(function (p) { return Math.abs(p[1]); }).concat([1e-9]));
    hit.cell.top.forEach(function (pair) {
      var item = el("li");
      item.appendChild(el("span", "name", classes[pair[0]]));
      item.appendChild(el("span", "score", pair[1].toFixed(3)));
      if (closable) {
        var bar = item.appendChild(el("span", "bar" + (pair[1] < 0 ? " negative" : "")));
        bar.style.width = (100 * Math.abs(pair[1]) / peak).toFixed(1) + "%";
      }
      list.appendChild(item);
    });
    node.appendChild(list);
    var code = v.classFilter.codeOf(hit.level, hit.cell);
    if (code !== null) {
      node.appendChild(el("p", "filtered-score", classes[v.filter.cls] + ": " + v.classFilter.score(code).toFixed(3)));
    }
    if (!closable) node.appendChild(el("p", "", summary));
    if (hit.cell.trust !== null && hit.cell.trust !== undefined) {
      node.appendChild(el("p", "cell-trust", "Layout trust: " + (hit.cell.trust * 10).toFixed(1) + " of each " +
        "activation's 10 nearest neighbours stay beside it on the map"));
    }
    if (v.atlas.examples) node.appendChild(this.examples(hit, closable));
    node.appendChild(el("p", "card-help", "Attribution: activation × gradient of the class's logit, averaged over " +
      "the cell. Fidelity: cosine between the cell's mean activation and its icon's (1 is exact)." +
      (v.atlas.examples ? " Examples: the patches of the images, cut to what the position sees, whose " +
        "activations point most nearly the cell's way." : "")));
    node.hidden = false;
    this.shownAt = hit;
  };

  // The cell's icon at its own size, cut from its tile.
  Card.prototype.icon = function (hit) {
    var v = this.viewer, level = v.atlas.level_data[hit.level], span = level.tile_cells, px = v.atlas.icon_px;
    var canvas = el("canvas", "card-icon");
    canvas.width = canvas.height = px;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "The cell's icon");
    var path = v.atlas.id + "/" + level.size + "-" + Math.floor(hit.x / span) + "-" + Math.floor(hit.y / span) + ".webp";
    var paint = function () {
      var img = v.mask.source(path), ctx = canvas.getContext("2d");
      if (!img) return false;
      ctx.clearRect(0, 0, px, px);
      ctx.drawImage(img, (hit.x % span) * px, (hit.y % span) * px, px, px, 0, 0, px, px);
      return true;
    };
    if (!paint()) v.mask.files(path).forEach(function (file) { v.loader.image(file).addEventListener("load", paint); });
    return canvas;
  };

  // The cell's real examples, from its sprite group's script and picture, loaded when the cell is inspected.
  // In the pinned card each one is named by its source image and the model's prediction for its crop.
  Card.prototype.examples = function (hit, detailed) {
    var v = this.viewer, atlas = v.atlas, info = atlas.examples, card = this;
    var box = el("div", "examples" + (detailed ? " detailed" : ""));
    box.appendChild(el("p", "card-title", "Examples"));
    var stem = atlas.id + "/examples-" + hit.size + "-" + Math.floor(hit.x / info.group) + "-" +
      Math.floor(hit.y / info.group);
    var note = box.appendChild(el("p", "examples-loading", "Loading…"));
    v.loader.data(stem + ".js", function (data) {
      if (!same(card.shownAt, hit)) return; // another cell is shown by now
      var row = -1;
      (data ? data.cells : []).forEach(function (c, i) { if (c[0] === hit.x && c[1] === hit.y) row = i; });
      if (row < 0) { note.textContent = "No examples for this cell."; return; }
      box.removeChild(note);
      var list = box.appendChild(el(detailed ? "ol" : "div", "example-list"));
      var shown = detailed ? info.px : Math.round(info.px * 0.6);
      data.cells[row][2].forEach(function (e, j) {
        var item = list.appendChild(el(detailed ? "li" : "span", "example"));
        var patch = item.appendChild(el("span", "patch"));
        var scale = shown / info.px;
        patch.style.width = patch.style.height = shown + "px";
        patch.style.backgroundImage = "url(\"" + v.loader.base + stem + ".webp\")";
        patch.style.backgroundSize = (info.per_cell * shown) + "px " + (data.cells.length * shown) + "px";
        patch.style.backgroundPosition = (-j * info.px * scale) + "px " + (-row * info.px * scale) + "px";
        var name = String(data.names[e[0]]), predicted = v.classes[e[1]] + " (" + e[2] + "%)";
        patch.setAttribute("role", "img");
        patch.setAttribute("aria-label", "Patch of " + name + "; the model predicts " + predicted);
        patch.title = name + " · " + predicted;
        if (detailed) {
          item.appendChild(el("span", "example-name", name));
          item.appendChild(el("span", "example-prediction", predicted));
        }
      });
      card.place();
    });
    return box;
  };

  // Next to its cell, inside the viewer.
  Card.prototype.place = function () {
    var hit = this.shownAt, v = this.viewer, node = this.node;
    if (!hit || node.hidden) return;
    if (v.narrow) { node.style.left = node.style.top = ""; return; } // a sheet along the bottom, by the stylesheet
    var p = v.toScreen((hit.x + 1) / hit.size, (hit.y + 0.5) / hit.size);
    var left = p[0] + 8, top = p[1] - node.offsetHeight / 2;
    if (left + node.offsetWidth > v.width - 4) left = v.toScreen(hit.x / hit.size, 0)[0] - node.offsetWidth - 8;
    node.style.left = clamp(left, 4, Math.max(4, v.width - node.offsetWidth - 4)) + "px";
    node.style.top = clamp(top, 4, Math.max(4, v.height - node.offsetHeight - 4)) + "px";
  };

  function same(a, b) { return a && b && a.level === b.level && a.x === b.x && a.y === b.y; }

  Card.prototype.showHover = function (hit) {
    this.hover = hit && hit.cell ? hit : null;
    if (this.pinned || (same(this.hover, this.shownAt) && !this.node.hidden)) return;
    if (this.hover) { this.fill(this.hover, false); this.place(); } else if (!this.viewer.cursorOn) this.hide();
  };

  Card.prototype.showCursor = function () {
    var v = this.viewer, hit = v.cursor();
    if (!hit) return;
    this.pinned = null;
    this.viewer.root.classList.remove("pinned");
    if (hit.cell) { this.fill(hit, false); this.place(); } else this.hide();
    v.say(describe(v, hit));
  };

  Card.prototype.pin = function (hit) {
    var v = this.viewer;
    this.pinned = hit;
    v.root.classList.add("pinned");
    this.fill(hit, true);
    this.place();
    if (v.narrow) {
      // The card is a sheet along the bottom: bring the cell above it, as a map does with a pin.
      var free = v.height - this.node.offsetHeight, y = v.toScreen(0, (hit.y + 1) / hit.size)[1];
      if (y > free - 4) v.pan(0, free / 2 - v.toScreen(0, (hit.y + 0.5) / hit.size)[1]);
    }
    v.say(describe(v, hit));
    v.renderer.request();
    v.writeAddress(false);
  };

  Card.prototype.pinWhenLoaded = function (hit) {
    var now = this.viewer.cellAt((hit.x + 0.5) / hit.size, (hit.y + 0.5) / hit.size, hit.level);
    this.wanted = now ? null : hit;
    if (now && now.cell) this.pin(now);
  };

  // Region `region` of level `index` has arrived: a cell flown to or under the keyboard's cursor may be in it.
  Card.prototype.regionArrived = function (index, region) {
    var v = this.viewer;
    if (this.wanted && this.wanted.level === index) this.pinWhenLoaded(this.wanted);
    var hit = v.cursorOn && !this.pinned ? v.cursor() : null;
    if (hit && hit.level === index && v.regionOf(v.atlas.level_data[index], hit.x, hit.y) === region) this.showCursor();
  };

  // The shown cell again, after the class filter changed.
  Card.prototype.refresh = function () {
    if (this.shownAt && !this.node.hidden) { this.fill(this.shownAt, !!this.pinned); this.place(); }
  };

  Card.prototype.hide = function () {
    this.node.hidden = true;
    this.shownAt = null;
  };

  Card.prototype.close = function () {
    var was = this.pinned || !this.node.hidden;
    this.pinned = null;
    this.wanted = null;
    this.hover = null;
    this.viewer.cursorOn = false;
    this.viewer.root.classList.remove("pinned");
    this.hide();
    this.viewer.renderer.request();
    if (was) this.viewer.writeAddress(false);
    return was;
  };

  // A tap or click: pin the cell's card, or close it when the same cell (or no cell) is tapped again.
  Card.prototype.tap = function (hit) {
    if (!hit || !hit.cell || same(this.pinned, hit)) this.close();
    else this.pin(hit);
  };

  function describe(v, hit) {
    var where = "Row " + (hit.y + 1) + ", column " + (hit.x + 1) + " of the " + hit.size + " × " + hit.size + " grid: ";
    if (!hit.cell) return where + "no activations here.";
    return where + hit.cell.top.map(function (p) { return v.classes[p[0]] + " " + p[1].toFixed(2); }).join(", ") +
      ". Average of " + hit.cell.count + " activation" + (hit.cell.count === 1 ? "" : "s") +
      ", icon fidelity " + hit.cell.fidelity.toFixed(2) + ".";
  }

  // --- the class filter: a box that matches names, a legend and the class's strongest cells ---

  function ClassFilter(viewer) {
    var self = this;
    this.viewer = viewer;
    var root = viewer.root;
    this.input = root.querySelector(".class-search");
    this.list = root.querySelector(".class-options");
    this.signButton = root.querySelector(".class-sign");
    this.panel = root.querySelector(".class-panel");
    this.decoded = {};
    this.options = [];
    this.active = -1;
    if (!this.input) return;
    this.list.id = "atlas-classes-" + viewer.id;
    this.input.setAttribute("aria-controls", this.list.id);
    this.input.addEventListener("input", function () { self.suggest(false); });
    this.input.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        if (self.list.hidden) self.suggest(false);
        self.highlight(self.active + (e.key === "ArrowDown" ? 1 : -1));
      } else if (e.key === "Enter") {
        e.preventDefault();
        self.submit();
      } else if (e.key === "Escape" && !self.list.hidden) {
        e.preventDefault();
        e.stopPropagation();
        self.closeList();
      }
    });
    this.input.addEventListener("blur", function () { setTimeout(function () { self.closeList(); }, 150); });
    this.list.addEventListener("mousedown", function (e) { e.preventDefault(); }); // keep focus in the box
    this.list.addEventListener("click", function (e) {
      var item = e.target.closest("[data-class]");
      if (item) self.choose(+item.getAttribute("data-class"));
    });
    if (this.signButton) {
      this.signButton.addEventListener("click", function () {
        viewer.filter.sign = -viewer.filter.sign;
        self.choose(viewer.filter.cls);
      });
    }
    if (this.panel) {
      this.panel.addEventListener("click", function (e) {
        var item = e.target.closest("[data-cell]");
        if (!item) return;
        var parts = item.getAttribute("data-cell").split(",").map(Number), size = viewer.atlas.level_data[parts[0]].size;
        viewer.flyTo({ level: parts[0], size: size, x: parts[1], y: parts[2] });
      });
    }
  }

  // Classes whose names match `query`: the exact name alone, else those starting with it, else containing it.
  ClassFilter.prototype.matches = function (query) {
    var q = String(query).trim().toLowerCase(), classes = this.viewer.classes || [], found = [], i;
    if (!q) return [];
    if (/^\d+$/.test(q) && +q < classes.length && classes.indexOf(q) < 0) return [+q];
    for (i = 0; i < classes.length; i++) if (String(classes[i]).toLowerCase() === q) return [i];
    var starts = [], contains = [];
    for (i = 0; i < classes.length; i++) {
      var name = String(classes[i]).toLowerCase(), at = name.indexOf(q);
      if (at === 0) starts.push(i);
      else if (at > 0) contains.push(i);
    }
    found = starts.concat(contains);
    return found;
  };

  ClassFilter.prototype.exact = function (name) {
    var found = this.matches(name);
    return found.length === 1 ? found[0] : -1;
  };

  ClassFilter.prototype.suggest = function (announce) {
    var v = this.viewer, found = this.matches(this.input.value), list = this.list;
    this.options = found.slice(0, 12);
    this.active = -1;
    list.textContent = "";
    this.options.forEach(function (cls, k) {
      var item = el("li", "", v.classes[cls]);
      item.id = list.id + "-" + k;
      item.setAttribute("role", "option");
      item.setAttribute("data-class", cls);
      item.setAttribute("aria-selected", "false");
      list.appendChild(item);
    });
    if (found.length > this.options.length) {
      var more = el("li", "more", (found.length - this.options.length) + " more: type more of the name");
      more.setAttribute("aria-disabled", "true");
      list.appendChild(more);
    }
    var open = this.options.length > 0 && this.input.value.trim() !== "";
    list.hidden = !open;
    this.input.setAttribute("aria-expanded", open ? "true" : "false");
    this.input.removeAttribute("aria-activedescendant");
    if (announce) {
      this.viewer.say(found.length ? found.length + " classes match “" + this.input.value.trim() + "”: choose one" :
        "No class matches “" + this.input.value.trim() + "”");
    }
    return found;
  };

  ClassFilter.prototype.highlight = function (k) {
    var items = this.list.querySelectorAll("[role=option]");
    if (!items.length) return;
    this.active = (k + items.length) % items.length;
    items.forEach(function (item, i) { item.setAttribute("aria-selected", i === this.active ? "true" : "false"); }, this);
    this.input.setAttribute("aria-activedescendant", items[this.active].id);
    items[this.active].scrollIntoView({ block: "nearest" });
  };

  ClassFilter.prototype.closeList = function () {
    this.list.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  };

  // Enter in the box: a highlighted option, an exact name or the only match is taken; several are listed.
  ClassFilter.prototype.submit = function () {
    var text = this.input.value.trim();
    if (!text) { this.choose(-1); return; }
    if (!this.list.hidden && this.active >= 0) { this.choose(this.options[this.active]); return; }
    var found = this.matches(text);
    if (found.length === 1) this.choose(found[0]);
    else this.suggest(true);
  };

  ClassFilter.prototype.choose = function (cls, quiet) {
    var v = this.viewer;
    v.filter.cls = cls;
    if (this.input) {
      this.input.value = cls >= 0 ? v.classes[cls] : "";
      this.closeList();
    }
    if (this.signButton) this.signButton.setAttribute("aria-pressed", v.filter.sign < 0 ? "true" : "false");
    v.root.classList.toggle("filtered", cls >= 0);
    if (this.panel) {
      if (this.panel.hidden && cls >= 0) this.panel.open = !v.narrow; // on a phone it would cover the atlas
      this.panel.hidden = cls < 0;
      var name = this.panel.querySelector(".class-name");
      if (name) name.textContent = cls >= 0 ? (v.filter.sign < 0 ? "against " : "") + v.classes[cls] : "";
      var top = this.panel.querySelector(".legend-max");
      if (top) top.textContent = (v.filter.sign < 0 ? "−" : "") + (v.atlas ? v.atlas.class_scale.toPrecision(2) : "");
    }
    this.strongestFor = null;
    v.card.refresh();
    if (!quiet) {
      v.say(cls >= 0 ? "Icons faded by their attribution " + (v.filter.sign < 0 ? "against " : "to ") + v.classes[cls] :
        "Class filter cleared");
      v.viewChanged(false);
    } else {
      this.refreshStrongest();
    }
  };

  // The chosen class's codes (-127..127: the square root of the score over the atlas's scale) for the cells of
  // `region` of level `index` (a one-file level's only region is "0-0"), in the region's order; null while
  // they load, which this asks for.
  ClassFilter.prototype.codes = function (index, region) {
    var v = this.viewer, cls = v.filter.cls, atlas = v.atlas, name = region || "0-0";
    if (cls < 0 || !atlas) return null;
    var level = atlas.level_data[index], path, column;
    if (!holds(level, name)) return null;
    if (level.class_script) {
      path = regionPath(level.class_script, name, Math.floor(cls / level.class_chunk));
      column = function (data) { return data.codes[cls - data.first]; };
    } else {
      path = atlas.class_scripts[Math.floor(cls / atlas.class_chunk)];
      column = function (data) { return data.codes[level.size][cls - data.first]; };
    }
    var key = path.replace(/\.js$/, ""), data = DATA[key];
    if (!data) {
      v.loader.data(path, function () { v.renderer.request(); v.card.refresh(); });
      return null;
    }
    var slot = key + ":" + cls;
    if (!this.decoded[slot]) {
      var raw = atob(column(data)), codes = new Int8Array(raw.length);
      for (var i = 0; i < raw.length; i++) codes[i] = raw.charCodeAt(i) << 24 >> 24;
      this.decoded[slot] = codes;
    }
    return this.decoded[slot];
  };

  // A loaded cell's code for the chosen class, or null (no class chosen, or its codes still loading).
  ClassFilter.prototype.codeOf = function (index, cell) {
    var codes = this.codes(index, cell.region);
    return codes ? codes[cell.i] : null;
  };

  ClassFilter.prototype.score = function (code) {
    var q = code / 127;
    return (q < 0 ? -1 : 1) * q * q * this.viewer.atlas.class_scale;
  };

  // The list of the class's strongest cells at the level in view, each a button that flies there. They come
  // from the class's own small script, so a large level's cells need not be loaded to list them.
  ClassFilter.prototype.refreshStrongest = function () {
    var v = this.viewer, list = this.panel && this.panel.querySelector(".strongest"), atlas = v.atlas;
    if (!list || v.filter.cls < 0 || !atlas) return;
    var index = v.levelIndex(), cls = v.filter.cls, sign = v.filter.sign;
    var key = atlas.id + ":" + index + ":" + cls + ":" + sign;
    if (this.strongestFor === key) return;
    var path = atlas.strongest_scripts[Math.floor(cls / atlas.strongest_chunk)], data = DATA[path.replace(/\.js$/, "")];
    if (!data) {
      v.loader.data(path, function (loaded) { if (loaded && v.atlas === atlas) v.classFilter.refreshStrongest(); });
      return;
    }
    this.strongestFor = key;
    var found = data.cells[cls - data.first][index][sign > 0 ? 0 : 1], self = this; // [x, y, code, lead, ...]
    list.textContent = "";
    for (var k = 0; k < found.length; k += 4) {
      var x = found[k], y = found[k + 1], item = el("li"), button = el("button", "fly");
      button.type = "button";
      button.setAttribute("data-cell", index + "," + x + "," + y);
      button.appendChild(el("span", "score", self.score(found[k + 2]).toFixed(3)));
      if (found[k + 3] >= 0) button.appendChild(el("span", "name", "led by " + v.classes[found[k + 3]]));
      button.title = "Go to row " + (y + 1) + ", column " + (x + 1);
      item.appendChild(button);
      list.appendChild(item);
    }
    if (!found.length) list.appendChild(el("li", "none", "No cell at this zoom"));
  };

  // --- sharing -------------------------------------------------------------------------------

  // --- the trust overlay: shades the cells whose activations lose their neighbours on the map ---

  function TrustOverlay(viewer) {
    var self = this;
    this.viewer = viewer;
    this.on = false;
    this.button = viewer.root.querySelector(".trust-toggle");
    this.legend = viewer.root.querySelector(".trust-legend");
    if (this.button) this.button.addEventListener("click", function () { self.set(!self.on); });
  }

  // The share kept at which a cell is drawn clear: twice the layer's mean, so that the shade ranks cells
  // within the layer (a share kept by chance is about nothing).
  TrustOverlay.prototype.clear = function () {
    var mean = this.viewer.atlas && this.viewer.atlas.trust_mean;
    return mean ? Math.min(1, 2 * mean) : 1;
  };

  TrustOverlay.prototype.set = function (on, quiet) {
    var v = this.viewer, atlas = v.atlas, has = !!(atlas && atlas.trust_mean !== undefined && atlas.trust_mean !== null);
    this.on = !!on && has;
    if (this.button) {
      this.button.hidden = !has;
      this.button.setAttribute("aria-pressed", this.on ? "true" : "false");
    }
    if (this.legend) {
      this.legend.hidden = !this.on;
      if (this.on) {
        this.legend.querySelector(".trust-max").textContent = (this.clear() * 10).toFixed(1) + (this.clear() < 1 ? "+" : "");
        this.legend.querySelector(".trust-global").textContent = atlas.trustworthiness === null ? "" :
          "Trustworthiness of the whole layer: " + atlas.trustworthiness.toFixed(3) + " (1 is perfect).";
      }
    }
    v.renderer.request();
    if (!quiet) { v.writeAddress(false); v.share.refresh(); v.say(this.on ? "Trust overlay on" : "Trust overlay off"); }
  };

  TrustOverlay.prototype.draw = function (ctx, visible, corner, cellPx) {
    if (!this.on) return;
    var clear = this.clear();
    visible.forEach(function (v) {
      var cell = v[0];
      if (cell.trust === null || cell.trust === undefined) return;
      var shade = 0.75 * (1 - Math.min(1, cell.trust / clear));
      if (shade <= 0.01) return;
      ctx.fillStyle = "rgba(90, 10, 10, " + shade.toFixed(3) + ")";
      ctx.fillRect(corner[0] + cell.x * cellPx, corner[1] + cell.y * cellPx, cellPx, cellPx);
    });
  };

  // --- importance masks: each icon cut by where its optimization leaned on it (MACO's masks) ----

  var MASK_CUTS = 256; // tiles kept cut by their masks; past this many the oldest are cut again when needed

  function IconMask(viewer) {
    var self = this;
    this.viewer = viewer;
    this.on = true; // kept across atlases, so that a switch to another with masks keeps the reader's choice
    this.cut = {}; // tile path -> a canvas of the tile with its mask as alpha
    this.order = [];
    this.button = viewer.root.querySelector(".mask-toggle");
    if (this.button) this.button.addEventListener("click", function () { self.set(!self.on); });
  }

  IconMask.prototype.has = function () { return !!(this.viewer.atlas && this.viewer.atlas.mask); };

  IconMask.prototype.set = function (on, quiet) {
    var v = this.viewer, has = this.has();
    this.on = !!on;
    if (this.button) {
      this.button.hidden = !has;
      this.button.setAttribute("aria-pressed", this.on && has ? "true" : "false");
    }
    v.renderer.request();
    if (!quiet) { v.writeAddress(false); v.share.refresh(); v.say(this.on ? "Masks on" : "Masks off"); }
  };

  // The images a tile is drawn from: the tile, and its mask while masks are shown.
  IconMask.prototype.files = function (path) {
    return this.on && this.has() ? [path, path.replace(/\.webp$/, "-mask.webp")] : [path];
  };

  // What the icons of the tile at `path` are drawn from, or null until its images have loaded: the tile, or
  // while masks are shown, a canvas of the tile cut by its mask ("destination-in" keeps the mask's alpha).
  IconMask.prototype.source = function (path) {
    var v = this.viewer, files = this.files(path), images = files.map(function (f) { return v.loader.image(f); });
    if (!images.every(ready)) return null;
    if (images.length === 1) return images[0];
    var cut = this.cut[path];
    if (cut) return cut;
    cut = document.createElement("canvas");
    cut.width = images[0].naturalWidth;
    cut.height = images[0].naturalHeight;
    var ctx = cut.getContext("2d");
    ctx.drawImage(images[0], 0, 0);
    ctx.globalCompositeOperation = "destination-in";
    ctx.drawImage(images[1], 0, 0, cut.width, cut.height);
    this.cut[path] = cut;
    this.order.push(path);
    if (this.order.length > MASK_CUTS) delete this.cut[this.order.shift()];
    return cut;
  };

  // --- linked layers: where one layer's cell sits in another's atlas ---------------------------

  function LinkedLayers(viewer) {
    this.viewer = viewer;
    this.partners = []; // the other viewers of the same linked figure
    this.sent = "";
    this.from = null; // {atlas, hit}: the other viewer's cell shown here
    this.cells = null; // {size, list: [x, y, count, ...], max}
    this.readout = viewer.root.querySelector(".link-readout");
  }

  // The cell pinned, else hovered: told to the partners when it changes (called after each draw).
  LinkedLayers.prototype.send = function () {
    var v = this.viewer, hit = v.card.pinned || v.card.hover;
    var key = hit && v.atlas ? v.atlas.id + ":" + hit.size + "-" + hit.x + "-" + hit.y : "";
    if (key === this.sent) return;
    this.sent = key;
    this.partners.forEach(function (p) { p.links.receive(v, hit); });
  };

  LinkedLayers.prototype.receive = function (source, hit) {
    var self = this, v = this.viewer, scripts = hit && v.atlas && source.atlas.links && source.atlas.links[v.atlas.id];
    var path = scripts && scripts[String(hit.size)], want = this.from = path ? { atlas: source.atlas, hit: hit } : null;
    this.cells = null;
    this.show("");
    if (!path) { v.renderer.request(); return; }
    v.loader.data(path, function (data) {
      if (self.from !== want || !data) return;
      var list = [], max = 1, total = 0;
      data.cells.forEach(function (c) { if (c[0] === hit.x && c[1] === hit.y) list = c[2]; });
      for (var i = 2; i < list.length; i += 3) { max = Math.max(max, list[i]); total += list[i]; }
      self.cells = { size: hit.size, list: list, max: max };
      self.show(list.length ? "The cell of " + source.atlas.label + ": " + total + " of its positions here, in " +
        list.length / 3 + " cell" + (list.length === 3 ? "" : "s") : "The cell of " + source.atlas.label +
        ": none of its positions here");
      v.renderer.request();
    });
  };

  LinkedLayers.prototype.show = function (text) {
    if (!this.readout) return;
    this.readout.textContent = text;
    this.readout.hidden = !text;
  };

  // A veil over the map with a window at each linked cell, outlined by how many positions it holds.
  LinkedLayers.prototype.draw = function (ctx, corner, s) {
    if (!this.cells) return;
    var list = this.cells.list, px = s / this.cells.size, i;
    ctx.save();
    ctx.beginPath();
    ctx.rect(corner[0], corner[1], s, s);
    for (i = 0; i < list.length; i += 3) ctx.rect(corner[0] + list[i] * px, corner[1] + list[i + 1] * px, px, px);
    ctx.fillStyle = "rgba(255, 255, 255, 0.7)";
    ctx.fill("evenodd");
    ctx.lineWidth = 2;
    for (i = 0; i < list.length; i += 3) {
      ctx.strokeStyle = "rgba(26, 95, 180, " + (0.35 + 0.65 * list[i + 2] / this.cells.max).toFixed(3) + ")";
      ctx.strokeRect(corner[0] + list[i] * px + 1, corner[1] + list[i + 1] * px + 1, px - 2, px - 2);
    }
    ctx.restore();
  };

  // --- region names: drawn on the map like place names, the largest regions first -----------

  var NAME_FONT = '600 {px}px system-ui, -apple-system, "Segoe UI", sans-serif';
  var NAME_GAP = 6; // pixels kept clear around each name

  function RegionNames(viewer) {
    var self = this;
    this.viewer = viewer;
    this.on = true;
    this.byLevel = null; // {"<level size>": [[x, y, activations, name], ...]} in cells of that level
    this.drawn = []; // the names on screen now, for tests and tools: [{name, left, top, right, bottom}]
    this.button = viewer.root.querySelector(".labels-toggle");
    if (this.button) this.button.addEventListener("click", function () { self.set(!self.on); });
  }

  RegionNames.prototype.load = function () {
    var self = this, v = this.viewer, atlas = v.atlas;
    this.byLevel = null;
    if (this.button) this.button.hidden = !atlas.names;
    if (!atlas.names) return;
    v.loader.data(atlas.names, function (payload) {
      if (v.atlas !== atlas) return;
      self.byLevel = payload;
      v.renderer.request();
    });
  };

  RegionNames.prototype.set = function (on, quiet) {
    var v = this.viewer;
    this.on = !!on;
    if (this.button) this.button.setAttribute("aria-pressed", this.on ? "true" : "false");
    v.renderer.request();
    if (!quiet) { v.writeAddress(false); v.share.refresh(); v.say(this.on ? "Region names on" : "Region names off"); }
  };

  // Biggest region first; a name that would overlap one already placed, or leave the view, is skipped.
  RegionNames.prototype.draw = function (ctx, level, corner, cellPx) {
    this.drawn = [];
    var names = this.on && this.byLevel && this.byLevel[String(level.size)];
    if (!names || !names.length) return;
    var v = this.viewer, placed = this.drawn, biggest = names[0][2] || 1;
    ctx.save();
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.lineJoin = "round";
    for (var i = 0; i < names.length; i++) {
      var n = names[i], px = Math.round(12 + 5 * Math.sqrt(n[2] / biggest));
      var sx = corner[0] + n[0] * cellPx, sy = corner[1] + n[1] * cellPx;
      if (sx < 0 || sy < 0 || sx > v.width || sy > v.height) continue;
      ctx.font = NAME_FONT.replace("{px}", px);
      var half = ctx.measureText(n[3]).width / 2 + NAME_GAP, tall = px / 2 + NAME_GAP;
      var box = { name: n[3], left: sx - half, top: sy - tall, right: sx + half, bottom: sy + tall };
      if (box.left < 0 || box.right > v.width || box.top < 0 || box.bottom > v.height) continue;
      // Neighbouring regions may share a name: within a few of its widths, it is written once.
      var near = 4 * half;
      if (placed.some(function (b) {
        return (b.left < box.right && box.left < b.right && b.top < box.bottom && box.top < b.bottom) ||
          (b.name === box.name && Math.abs(b.left + b.right - box.left - box.right) / 2 < near &&
           Math.abs(b.top + b.bottom - box.top - box.bottom) / 2 < near);
      })) continue;
      placed.push(box);
      ctx.lineWidth = 4;
      ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
      ctx.strokeText(n[3], sx, sy);
      ctx.fillStyle = "#1b1b1b";
      ctx.fillText(n[3], sx, sy);
    }
    ctx.restore();
  };

  function Share(viewer) {
    var self = this;
    this.viewer = viewer;
    this.node = viewer.root.querySelector(".share");
    if (!this.node) return;
    // Filled as the panel opens, so that what it shows is there at once.
    this.node.querySelector("summary").addEventListener("click", function () { self.fill(); });
    this.node.addEventListener("toggle", function () { self.refresh(); });
    this.node.querySelector(".copy-link").addEventListener("click", function () {
      copy(self.node.querySelector(".share-link"), this);
    });
    this.node.querySelector(".copy-embed").addEventListener("click", function () {
      copy(self.node.querySelector(".embed-code"), this);
    });
  }

  // The link and embed code are made only while the panel is open.
  Share.prototype.refresh = function () {
    if (this.node && this.node.open) this.fill();
  };

  Share.prototype.fill = function () {
    var v = this.viewer;
    if (!v.atlas) return;
    var view = v.viewString(), root = v.siteRoot;
    var page = v.mode === "explorer" ? new URL(v.atlas.id + ".html", window.location.href).href :
      new URL(root + "explore/" + v.atlas.id + ".html", window.location.href).href;
    var embed = new URL(root + "embed.html", window.location.href).href;
    this.node.querySelector(".share-link").value = page + "#" + view;
    this.node.querySelector(".embed-code").value = '<iframe src="' + attr(embed + "#" + view) + '" title="' +
      attr(v.atlas.title) +
      '" width="100%" height="480" style="border: 0" loading="lazy" allowfullscreen></iframe>';
  };

  Share.prototype.close = function () {
    if (!this.node || !this.node.open) return false;
    this.node.open = false;
    this.node.querySelector("summary").focus();
    return true;
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

  // --- input ---------------------------------------------------------------------------------

  function bindInput(v) {
    var frame = v.frame, root = v.root, pointers = {};
    var gesture = null; // {moved, start, tap}: the press in progress

    if (window.ResizeObserver) new ResizeObserver(function () { v.resize(); }).observe(frame);
    else window.addEventListener("resize", function () { v.resize(); });
    if (v.ownsHash) {
      window.addEventListener("hashchange", function () {
        var h = Hash.parse(window.location.hash);
        if (h.layer && v.atlas && h.layer !== v.atlas.id && v.loader.knows(h.layer)) v.open(h.layer, h);
        else if (v.atlas) v.applyView(h);
      });
    }

    // Outside the explorer the page scrolls past the atlas unless the reader is using it.
    frame.addEventListener("wheel", function (e) {
      if (v.mode !== "explorer" && !e.ctrlKey && document.activeElement !== frame) return;
      e.preventDefault();
      var r = frame.getBoundingClientRect();
      v.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });

    function list() { return Object.keys(pointers).map(function (k) { return pointers[k]; }); }
    function spread() {
      var ps = list();
      if (ps.length < 2) return null;
      return { d: Math.hypot(ps[0].x - ps[1].x, ps[0].y - ps[1].y), x: (ps[0].x + ps[1].x) / 2, y: (ps[0].y + ps[1].y) / 2 };
    }

    frame.addEventListener("pointerdown", function (e) {
      if (e.target !== frame && e.target !== v.canvas) return; // the minimap, the card
      if (e.pointerType === "mouse" && e.button !== 0) return;
      pointers[e.pointerId] = { x: e.clientX, y: e.clientY, type: e.pointerType };
      var many = list().length > 1;
      gesture = many ? { moved: true } : { moved: false, x: e.clientX, y: e.clientY, time: performance.now() };
      if (e.pointerType === "mouse" || v.active || many) {
        try { frame.setPointerCapture(e.pointerId); } catch (err) { /* synthetic pointers */ }
      }
    });
    function lift(e) {
      var p = pointers[e.pointerId];
      delete pointers[e.pointerId];
      if (!p || !gesture) return;
      if (e.type === "pointerup" && !gesture.moved && performance.now() - gesture.time < TAP_MS && !list().length) {
        if (p.type !== "mouse") v.setActive(true);
        v.cursorOn = false;
        v.card.tap(v.cellAtScreen(e.clientX, e.clientY));
      }
      if (!list().length) gesture = null;
    }
    frame.addEventListener("pointerup", lift);
    frame.addEventListener("pointercancel", lift); // the browser took the gesture: the page scrolled
    frame.addEventListener("pointermove", function (e) {
      var p = pointers[e.pointerId];
      if (p && gesture) {
        var before = spread(), dx = e.clientX - p.x, dy = e.clientY - p.y;
        p.x = e.clientX;
        p.y = e.clientY;
        if (!gesture.moved && Math.hypot(e.clientX - gesture.x, e.clientY - gesture.y) > TAP_PX) gesture.moved = true;
        var after = spread(), r = frame.getBoundingClientRect();
        if (before && after) {
          v.zoomAt(after.d / Math.max(1, before.d), after.x - r.left, after.y - r.top);
          v.pan(after.x - before.x, after.y - before.y);
        } else if (gesture.moved && (p.type === "mouse" || v.active)) {
          v.pan(dx, dy);
        }
      }
      if (e.pointerType === "mouse" && v.atlas && !(p && gesture && gesture.moved)) {
        v.card.showHover(v.cellAtScreen(e.clientX, e.clientY));
        v.renderer.request();
      }
    });
    frame.addEventListener("pointerleave", function (e) {
      if (e.pointerType !== "mouse") return;
      v.card.showHover(null);
      v.renderer.request();
    });
    frame.addEventListener("focusout", function (e) {
      if (frame.contains(e.relatedTarget)) return;
      if (v.cursorOn && !v.card.pinned) { v.cursorOn = false; v.card.hide(); v.renderer.request(); }
    });
    // A touch elsewhere on the page hands scrolling back to the page.
    document.addEventListener("pointerdown", function (e) {
      if (v.mode !== "explorer" && v.active && !root.contains(e.target)) v.setActive(false);
    });

    frame.addEventListener("keydown", function (e) {
      if (!v.atlas || e.altKey || e.ctrlKey || e.metaKey) return;
      var centre = function (f) {
        return function () {
          var was = v.state.z;
          v.zoomAt(f, v.width / 2, v.height / 2);
          if (f > 1 && v.state.z === was && v.capped) v.say("Zoomed in as far as the finest grid allows.");
          else if (v.cursorOn) v.card.showCursor();
        };
      };
      var keys = {
        ArrowLeft: function () { v.moveCursor(-1, 0); }, ArrowRight: function () { v.moveCursor(1, 0); },
        ArrowUp: function () { v.moveCursor(0, -1); }, ArrowDown: function () { v.moveCursor(0, 1); },
        "+": centre(1.5), "=": centre(1.5), "-": centre(1 / 1.5),
        "0": function () { v.state.set({ cx: 0.5, cy: 0.5, z: 1 }); if (v.cursorOn) v.card.showCursor(); },
        Enter: function () { var hit = v.cursor(); if (hit) v.card.tap(hit); }
      };
      if (keys[e.key]) {
        e.preventDefault();
        if (e.key !== "Enter") v.cursorOn = true;
        keys[e.key]();
      }
    });
    // Escape closes what is open: the class list first, then the card, then the Share panel.
    root.addEventListener("keydown", function (e) {
      if (e.key !== "Escape") return;
      if (v.card.close() || v.share.close()) { e.preventDefault(); v.say("Closed"); }
    });

    // The minimap: press or drag to move the view there.
    var map = v.minimap, dragging = false;
    function jump(e) {
      var r = map.getBoundingClientRect();
      v.state.set({ cx: (e.clientX - r.left) / r.width, cy: (e.clientY - r.top) / r.height });
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
        if (v.atlas && id !== v.atlas.id) {
          var cls = v.filter.cls >= 0 ? v.classes[v.filter.cls] : undefined;
          v.open(id, { "class": cls, sign: v.filter.sign < 0 ? "-" : "+" });
        }
      });
    });
  }

  document.querySelectorAll(".atlas-viewer[data-atlas]").forEach(function (node) {
    node.viewer = new Viewer(node);
  });
  document.querySelectorAll(".atlas-linked").forEach(function (figure) {
    var viewers = Array.prototype.map.call(figure.querySelectorAll(".atlas-viewer[data-atlas]"),
      function (node) { return node.viewer; });
    viewers.forEach(function (v) { v.links.partners = viewers.filter(function (o) { return o !== v; }); });
  });
})();
