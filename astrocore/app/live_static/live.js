/* astrocore's live views: Streamlit components (v1, in an iframe) that keep the hot path in the
 * browser. Hand-written, no build step; plotly.min.js is the one of the installed plotly package,
 * copied next to this file by astrocore/app/live.py.
 *
 *  - "generate": the Generate view's sliders and spectrum chart. A slider move decodes the star's
 *    latent z at the new conditions with the disentangler's decoder evaluated here (weights fetched
 *    once per run, see astrocore/app/live_decoder.py) and redraws with Plotly.react; the values go
 *    to the server afterwards, which answers with the true spectrum and the captions.
 *  - "scatter": the explorer's WebGL scatter; a lasso or box sends back only the selected row numbers.
 *
 * Nothing from the page's data is executed or parsed as HTML here: labels are set as text, and
 * plotly draws the figures the server built.
 */
(function () {
  "use strict";

  // ------------------------------------------------------------------ Streamlit protocol (components v1)
  function post(type, data) {
    if (window.parent === window) { return; }
    window.parent.postMessage(Object.assign({isStreamlitMessage: true, type: type}, data || {}), "*");
  }
  function setValue(value) { post("streamlit:setComponentValue", {value: value, dataType: "json"}); }
  var lastHeight = -1;
  function fitHeight() {
    var height = Math.ceil(document.body.getBoundingClientRect().height) + 4;
    if (height !== lastHeight) { lastHeight = height; post("streamlit:setFrameHeight", {height: height}); }
  }

  // ------------------------------------------------------------------ decoder (see live_decoder.py)
  var HALF = (function () {
    var table = new Float32Array(65536);
    for (var i = 0; i < 65536; i++) {
      var sign = (i & 0x8000) ? -1 : 1, exponent = (i >> 10) & 0x1f, fraction = i & 0x3ff;
      if (exponent === 0) { table[i] = sign * Math.pow(2, -14) * (fraction / 1024); }
      else if (exponent === 31) { table[i] = fraction ? NaN : sign * Infinity; }
      else { table[i] = sign * Math.pow(2, exponent - 15) * (1 + fraction / 1024); }
    }
    return table;
  })();

  function parseDecoder(buffer) {
    var bytes = new Uint8Array(buffer);
    if (String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]) !== "ACD1") { throw new Error("not a decoder file"); }
    var length = new DataView(buffer).getUint32(4, true);
    var header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
    var base = 8 + length, arrays = {};
    Object.keys(header.arrays).forEach(function (name) {
      var entry = header.arrays[name];
      var count = entry.shape.reduce(function (a, b) { return a * b; }, 1);
      if (entry.dtype === "f32") {
        arrays[name] = new Float32Array(buffer, base + entry.offset, count);
      } else {
        var codes = new Uint16Array(buffer, base + entry.offset, count), out = new Float32Array(count);
        for (var i = 0; i < count; i++) { out[i] = HALF[codes[i]]; }
        arrays[name] = out;
      }
    });
    return {header: header, arrays: arrays};
  }

  function activate(x, activation) {
    var i;
    if (activation.kind === "leaky_relu") {
      for (i = 0; i < x.length; i++) { if (x[i] < 0) { x[i] *= activation.slope; } }
    } else {
      for (i = 0; i < x.length; i++) { x[i] = x[i] / (1 + Math.exp(-x[i])); }
    }
    return x;
  }

  // out[r] = b[r] + sum_c W[r, c] x[c] for the rows ``rows`` (all when null), in float64.
  function linear(W, b, x, nRows, nCols, rows) {
    var n = rows ? rows.length : nRows, out = new Float64Array(n);
    for (var k = 0; k < n; k++) {
      var r = rows ? rows[k] : k, s = b[r], o = r * nCols;
      for (var c = 0; c < nCols; c++) { s += W[o + c] * x[c]; }
      out[k] = s;
    }
    return out;
  }

  function cpInputs(decoder, cp) {
    var h = decoder.header, A = decoder.arrays, n = cp.length, out = [], i, k;
    for (i = 0; i < n; i++) { out.push((cp[i] - A.cp_mean[i]) / A.cp_std[i]); }
    if (h.cp_features === "fourier") {
      var fraction = [];
      for (i = 0; i < n; i++) { fraction.push((cp[i] - A.cp_min[i]) / Math.max(A.cp_max[i] - A.cp_min[i], 1e-12)); }
      for (i = 0; i < n; i++) { for (k = 1; k <= h.cp_frequencies; k++) { out.push(Math.sin(Math.PI * fraction[i] * k)); } }
      for (i = 0; i < n; i++) { for (k = 1; k <= h.cp_frequencies; k++) { out.push(Math.cos(Math.PI * fraction[i] * k)); } }
    }
    return Float64Array.from(out);
  }

  // Flux (physical units) of ``latent`` at the conditions ``cp`` (in header.conditional order):
  // Disentangler.decode. With ``pixels`` only those pixels (an array of pixel numbers, -1 = gap: NaN).
  function decode(decoder, latent, cp, pixels) {
    var h = decoder.header, A = decoder.arrays, layers = h.layers, shapes = h.shapes;
    var conditions = cpInputs(decoder, cp);
    var x = new Float64Array(latent.length + conditions.length);
    x.set(latent, 0);
    x.set(conditions, latent.length);
    var pieces = null, offset = 0, last = layers.length - 1;
    if (h.film) {
      var m = h.film.modulation, s0 = h.arrays[m[0][0]].shape, s1 = h.arrays[m[1][0]].shape;
      var hidden = activate(linear(A[m[0][0]], A[m[0][1]], conditions, s0[0], s0[1], null), h.activation);
      pieces = linear(A[m[1][0]], A[m[1][1]], hidden, s1[0], s1[1], null);
    }
    for (var index = 0; index < last; index++) {
      x = activate(linear(A[layers[index][0]], A[layers[index][1]], x, shapes[index][0], shapes[index][1], null),
                   h.activation);
      if (pieces) {
        var width = h.film.widths[index];
        for (var j = 0; j < width; j++) { x[j] = x[j] * (1 + pieces[offset + j]) + pieces[offset + width + j]; }
        offset += 2 * width;
      }
    }
    var rows = null;
    if (pixels) { rows = []; for (var p = 0; p < pixels.length; p++) { if (pixels[p] >= 0) { rows.push(pixels[p]); } } }
    var y = linear(A[layers[last][0]], A[layers[last][1]], x, shapes[last][0], shapes[last][1], rows);
    var n = pixels ? pixels.length : h.n_pixels, out = new Float32Array(n), k = 0;
    for (var i = 0; i < n; i++) {
      var pixel = pixels ? pixels[i] : i;
      if (pixel < 0) { out[i] = NaN; continue; }
      var v = y[k++];
      if (h.sigmoid) { v = 1 / (1 + Math.exp(-v)); }
      out[i] = v * A.flux_scale[pixel] + A.flux_offset[pixel];
    }
    return out;
  }

  var decoders = {};  // url -> Promise of a parsed decoder (fetched once per run and iframe)
  function loadDecoder(url) {
    if (!decoders[url]) {
      decoders[url] = fetch(url, {credentials: "same-origin"}).then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.arrayBuffer();
      }).then(parseDecoder);
    }
    return decoders[url];
  }

  // ------------------------------------------------------------------ helpers
  var B64_TYPES = {f4: Float32Array, f8: Float64Array, i1: Int8Array, u1: Uint8Array, i2: Int16Array,
                   u2: Uint16Array, i4: Int32Array, u4: Uint32Array};
  // plotly's base64 arrays ({dtype, bdata, shape}) as typed arrays, so this code can read them.
  function typed(value) {
    if (!value || typeof value !== "object" || typeof value.bdata !== "string" || !B64_TYPES[value.dtype]) { return value; }
    var text = atob(value.bdata), bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) { bytes[i] = text.charCodeAt(i); }
    var flat = new B64_TYPES[value.dtype](bytes.buffer);
    var shape = typeof value.shape === "string" ? value.shape.split(",").map(Number) : value.shape;
    if (!shape || shape.length < 2) { return flat; }
    var rows = [], width = shape[1];  // 2-d (e.g. customdata with several columns): a list of rows
    for (var r = 0; r < shape[0]; r++) { rows.push(Array.from(flat.subarray(r * width, (r + 1) * width))); }
    return rows;
  }
  function decodeArrays(object, depth) {  // every {dtype, bdata} inside a trace, a few levels deep
    Object.keys(object).forEach(function (key) {
      var value = object[key];
      if (value && typeof value === "object" && !Array.isArray(value)) {
        if (typeof value.bdata === "string") { object[key] = typed(value); }
        else if (depth < 3) { decodeArrays(value, depth + 1); }
      }
    });
  }
  function decodeFigure(figure) {
    (figure.data || []).forEach(function (trace) { decodeArrays(trace, 0); });
    return figure;
  }
  function g(value) {  // Python's "{:g}"
    if (!isFinite(value)) { return String(value); }
    return String(Number(Number(value).toPrecision(6)));
  }
  function printf(format, value) {  // the slider formats of astrocore.app.spectra.slider_specs
    var match = /^%\.(\d+)([fg])$/.exec(format || "");
    if (format === "%d") { return String(Math.round(value)); }
    if (match && match[2] === "f") { return Number(value).toFixed(Number(match[1])); }
    if (match) { return String(Number(Number(value).toPrecision(Number(match[1])))); }
    return g(value);
  }
  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function applyTheme(theme) {
    if (!theme) { return; }
    var root = document.documentElement.style;
    if (theme.primaryColor) { root.setProperty("--primary", theme.primaryColor); }
    if (theme.textColor) { root.setProperty("--text", theme.textColor); }
    if (theme.backgroundColor) { root.setProperty("--background", theme.backgroundColor); }
    if (theme.font) { root.setProperty("--font", theme.font); }
  }

  // ------------------------------------------------------------------ generate view
  var G = {built: null, star: null, values: {}, inputs: {}, shown: {}, decoder: null, decoderUrl: null,
           timer: null, id: Math.random().toString(36).slice(2), seq: 0, revision: 0};

  function sameValues(a, b) {
    var keys = Object.keys(a || {});
    return keys.length === Object.keys(b || {}).length &&
      keys.every(function (k) { return Math.abs(Number(a[k]) - Number(b[k])) < 1e-9; });
  }

  function extrapolationText(args, values) {
    var parts = [];
    args.specs.forEach(function (spec) {
      var v = values[spec.name];
      if (v < spec.train_low - 1e-6 || v > spec.train_high + 1e-6) {
        parts.push((spec.short + " = " + g(v) + " " + spec.unit + " is outside the training range " + g(spec.train_low) +
                    "–" + g(spec.train_high) + " " + spec.unit).replace(/ {2}/g, " ").trim());
      }
    });
    return parts.join("; ");
  }

  function buildGenerate(args) {
    var root = document.getElementById("root");
    root.textContent = "";
    var box = element("div", "generate");
    var controls = element("div", "controls"), chartColumn = element("div", "chart-column");
    G.inputs = {};
    G.shown = {};
    args.specs.forEach(function (spec) {
      var block = element("div", "slider");
      var label = element("label", "slider-label");
      var title = element("span", "slider-title", spec.title), shown = element("span", "slider-value", "");
      label.appendChild(title);
      label.appendChild(shown);
      var input = element("input");
      input.type = "range";
      input.min = spec.low; input.max = spec.high; input.step = spec.step;
      input.setAttribute("aria-label", spec.title);
      input.dataset.name = spec.name;
      input.title = spec.help;
      input.addEventListener("input", function () { onSlide(spec.name, Number(input.value)); });
      var ends = element("div", "slider-ends");
      ends.appendChild(element("span", "", printf(spec.format, spec.low)));
      ends.appendChild(element("span", "train", "training " + g(spec.train_low) + " – " + g(spec.train_high)));
      ends.appendChild(element("span", "", printf(spec.format, spec.high)));
      block.appendChild(label);
      block.appendChild(input);
      block.appendChild(ends);
      controls.appendChild(block);
      G.inputs[spec.name] = input;
      G.shown[spec.name] = shown;
    });
    var reset = element("button", "reset", "↺ Back to the star's own values");
    reset.type = "button";
    reset.addEventListener("click", function () {
      G.args.specs.forEach(function (spec) { G.values[spec.name] = G.args.own_snapped[spec.name]; });
      showSliders();
      redraw();
      report(0);
    });
    controls.appendChild(reset);
    G.note = element("div", "note", "");
    controls.appendChild(G.note);
    G.warning = element("div", "warning");
    G.warning.hidden = true;
    G.chart = element("div", "chart");
    G.chart.id = "chart";
    chartColumn.appendChild(G.warning);
    chartColumn.appendChild(G.chart);
    box.appendChild(controls);
    box.appendChild(chartColumn);
    root.appendChild(box);
    G.built = args.specs.map(function (s) { return s.name + ":" + s.low + ":" + s.high + ":" + s.step; }).join("|");
  }

  function showSliders() {
    G.args.specs.forEach(function (spec) {
      G.inputs[spec.name].value = G.values[spec.name];
      G.shown[spec.name].textContent = printf(spec.format, G.values[spec.name]);
    });
  }

  function onSlide(name, value) {
    G.values[name] = value;
    var spec = G.args.specs.find(function (s) { return s.name === name; });
    G.shown[name].textContent = printf(spec.format, value);
    redraw();
    report(150);
  }

  // The values go to the server once the slider rests (a held key does not queue reruns).
  function report(delay) {
    clearTimeout(G.timer);
    G.timer = setTimeout(function () {
      G.seq += 1;
      setValue({id: G.id, seq: G.seq, star: G.star, values: Object.assign({}, G.values)});
    }, delay);
  }

  function yRange(data, xrange) {
    var low = Infinity, high = -Infinity;
    data.forEach(function (trace) {
      if ((trace.yaxis && trace.yaxis !== "y") || !trace.x || !trace.y || trace.visible === false) { return; }
      for (var i = 0; i < trace.y.length; i++) {
        var x = trace.x[i], y = trace.y[i];
        if (x >= xrange[0] && x <= xrange[1] && isFinite(y)) { if (y < low) { low = y; } if (y > high) { high = y; } }
      }
    });
    if (!isFinite(low)) { return null; }
    var span = Math.max(high - low, 0.05);
    return [low - 0.06 * span, high + 0.06 * span + 0.12 * span];  // plots._y_range: headroom for line labels
  }

  function redraw() {
    var args = G.args, figure = G.figure;
    if (!args || !figure || typeof Plotly === "undefined") { return; }
    var values = G.values, fresh = sameValues(values, args.values);
    var data = figure.data.map(function (trace) { return Object.assign({}, trace); });
    var layout = Object.assign({}, figure.layout);
    var message = extrapolationText(args, values);
    if (!fresh && G.decoder) {
      var cp = G.decoder.header.conditional.map(function (name) { return values[name]; });
      var started = performance.now(), y = decode(G.decoder, args.latent, cp, args.pixels);
      var times = window.__astrocoreDecodeMs = (window.__astrocoreDecodeMs || []).slice(-49);  // benchmarks/latency.py
      times.push(performance.now() - started);
      data.forEach(function (trace) {
        if (trace.name === args.generated_name) {
          trace.y = y;
          trace.line = Object.assign({}, trace.line, {color: message ? args.colors.extrapolation : args.colors.generated});
        } else if (args.stale.indexOf(trace.name) >= 0) {
          trace.opacity = 0.3;  // the true spectrum (and its residual) follow from the server
        }
      });
      var target = args.specs.map(function (spec) { return spec.short + " " + g(values[spec.name]); }).join(", ");
      var title = args.title_prefix + "<b>" + target + "</b>" + args.title_suffix;
      if (message) { title += "  <span style='color:" + args.colors.extrapolation + "'>⚠ extrapolation</span>"; }
      layout.title = Object.assign({}, layout.title, {text: title});
      layout.meta = Object.assign({}, layout.meta, {values: Object.assign({}, values), browser_decoded: true});
      var range = yRange(data, layout.xaxis.range);
      if (range) { layout.yaxis = Object.assign({}, layout.yaxis, {range: range}); }
    }
    G.revision += 1;
    layout.datarevision = G.revision;
    if (message) {
      G.warning.textContent = "⚠ Extrapolation — " + message + ". " + args.extrapolation_note;
      G.warning.hidden = false;
    } else {
      G.warning.hidden = true;
    }
    Plotly.react(G.chart, data, layout, args.config);
    fitHeight();
  }

  function noteDecoder(text, problem) {
    G.note.textContent = text;
    G.note.classList.toggle("problem", Boolean(problem));
  }

  function renderGenerate(args) {
    var layoutKey = args.specs.map(function (s) { return s.name + ":" + s.low + ":" + s.high + ":" + s.step; }).join("|");
    if (G.built !== layoutKey) { buildGenerate(args); G.star = null; }
    G.args = args;
    G.figure = decodeFigure(args.figure);
    if (args.star !== G.star) {  // another star (or model): the sliders snap to the server's values
      G.star = args.star;
      G.values = Object.assign({}, args.values);
    }
    showSliders();
    if (args.decoder_url !== G.decoderUrl) {
      G.decoderUrl = args.decoder_url;
      G.decoder = null;
      noteDecoder("Loading the decoder into the browser …");
      var url = args.decoder_url;
      loadDecoder(url).then(function (decoder) {
        if (G.decoderUrl !== url) { return; }
        G.decoder = decoder;
        window.__astrocoreDecoderReady = true;
        noteDecoder("Slider moves are decoded in the browser; the true spectrum follows from the server.");
        redraw();
      }).catch(function (error) {
        noteDecoder("The decoder could not be loaded into the browser (" + error.message +
                    "): each move waits for the server.", true);
      });
    }
    redraw();
    // The server is behind (a report lost to a rerun it was part of): tell it again, once per value set.
    var pending = JSON.stringify(G.values);
    if (!sameValues(G.values, args.values) && G.retold !== pending) { G.retold = pending; report(150); }
    window.__astrocoreServer = {t: performance.now(), values: args.values};  // benchmarks/latency.py
  }

  // ------------------------------------------------------------------ scatter view
  // The figure is drawn afresh only when the server sends another one (figure_key); a lasso or box
  // sends back its shape in data coordinates (the server selects among all objects, also those a
  // large run does not draw), a click the picked row: a few hundred bytes instead of every point.
  var S = {figureKey: null, id: Math.random().toString(36).slice(2), seq: 0};

  function renderScatter(args) {
    var root = document.getElementById("root");
    if (!S.chart) {
      root.textContent = "";
      S.chart = element("div", "chart");
      S.chart.id = "chart";
      root.appendChild(S.chart);
    }
    if (args.figure_key === S.figureKey) { return; }
    S.figureKey = args.figure_key;
    var figure = decodeFigure(args.figure);
    if (S.chart.data) { Plotly.purge(S.chart); }  // a fresh chart: no lasso left over from the last figure
    Plotly.newPlot(S.chart, figure.data, figure.layout, args.config).then(function () {
      S.sentShape = null;
      S.chart.on("plotly_selected", onSelected);
      S.chart.on("plotly_click", onClick);
      S.chart.on("plotly_deselect", function () { sendSelection({}); });
      fitHeight();
    });
  }

  // The lasso's shape is sent on the mouse release itself, from the pointer positions in data
  // coordinates (what plotly's lasso is made of), before plotly restyles 10,000 points and emits
  // plotly_selected (about 100 ms later); that event then only reports a shape not sent yet.
  var drag = null;
  function dataPoint(event) {
    var full = S.chart._fullLayout, xa = full.xaxis, ya = full.yaxis, box = S.chart.getBoundingClientRect();
    return [xa.p2d(event.clientX - box.left - xa._offset), ya.p2d(event.clientY - box.top - ya._offset)];
  }
  document.addEventListener("mousedown", function (event) {
    var mode = S.chart && S.chart._fullLayout && S.chart._fullLayout.dragmode;
    drag = null;
    if (event.button !== 0 || (mode !== "lasso" && mode !== "select") || !event.target.classList ||
        !event.target.classList.contains("nsewdrag")) { return; }
    drag = {mode: mode, points: [dataPoint(event)], pixels: [[event.clientX, event.clientY]]};
  }, true);
  document.addEventListener("mousemove", function (event) {
    if (drag && event.buttons & 1) { drag.points.push(dataPoint(event)); drag.pixels.push([event.clientX, event.clientY]); }
  }, true);
  document.addEventListener("mouseup", function (event) {
    if (!event.isTrusted) { return; }  // our own replay below
    var done = drag;
    drag = null;
    if (!done || done.points.length < 3) { return; }
    var first = done.pixels[0], moved = done.pixels.some(function (p) { return Math.abs(p[0] - first[0]) + Math.abs(p[1] - first[1]) > 6; });
    if (!moved) { return; }  // a click: plotly_click reports it
    done.points.push(dataPoint(event));
    var xs = done.points.map(function (p) { return p[0]; }), ys = done.points.map(function (p) { return p[1]; });
    var last = xs.length - 1;  // a box spans the press and the release
    var selection = done.mode === "lasso" ? {lasso: [{x: xs, y: ys}]} : {box: [{
      x: [Math.min(xs[0], xs[last]), Math.max(xs[0], xs[last])], y: [Math.min(ys[0], ys[last]), Math.max(ys[0], ys[last])]}]};
    S.sentShape = true;
    sendSelection(selection);
    // Plotly's own release handling (selecting and restyling every point, ~100 ms for 10,000) runs
    // right after the page has sent the selection to the server, not before: the same release,
    // replayed on the same element once the message is out.
    event.stopImmediatePropagation();
    var target = event.target, init = {bubbles: true, cancelable: true, view: window, clientX: event.clientX,
      clientY: event.clientY, screenX: event.screenX, screenY: event.screenY, button: event.button, buttons: event.buttons,
      shiftKey: event.shiftKey, ctrlKey: event.ctrlKey, altKey: event.altKey, metaKey: event.metaKey};
    setTimeout(function () { target.dispatchEvent(new MouseEvent("mouseup", init)); }, 15);
  }, true);

  function onSelected(event) {
    if (!event) { return; }
    if (S.sentShape) { S.sentShape = null; return; }  // sent on the mouse release already
    if (event.lassoPoints && event.lassoPoints.x) {
      sendSelection({lasso: [{x: Array.from(event.lassoPoints.x), y: Array.from(event.lassoPoints.y)}]});
    } else if (event.range && event.range.x) {
      sendSelection({box: [{x: Array.from(event.range.x), y: Array.from(event.range.y)}]});
    }  // a click selects a point too: onClick reports it
  }

  function onClick(event) {
    var point = event && event.points && event.points[0];
    if (!point) { return; }
    var row = point.customdata;
    if (Array.isArray(row)) { row = row[0]; }
    if (row === undefined || row === null || !isFinite(row)) { return; }
    sendSelection({points: [{customdata: [Number(row)], x: point.x, y: point.y}]});
  }

  function sendSelection(selection) {
    S.seq += 1;
    window.__astrocoreSent = {t: performance.now(), selection: selection};  // benchmarks/latency.py
    setValue({id: S.id, seq: S.seq, selection: selection});
  }

  // ------------------------------------------------------------------ dispatch
  window.addEventListener("message", function (event) {
    if (event.source !== window.parent) { return; }
    var message = event.data || {};
    if (message.type !== "streamlit:render") { return; }
    var args = message.args || {};
    applyTheme(message.theme);
    if (args.kind === "generate") { renderGenerate(args); }
    else if (args.kind === "scatter") { renderScatter(args); }
  });
  if (typeof ResizeObserver !== "undefined") { new ResizeObserver(fitHeight).observe(document.body); }
  window.addEventListener("resize", function () {  // the iframe follows the page's width; so do the charts
    [G.chart, S.chart].forEach(function (chart) { if (chart && chart.data && typeof Plotly !== "undefined") { Plotly.Plots.resize(chart); } });
  });
  window.AstroLive = {parseDecoder: parseDecoder, decode: decode, loadDecoder: loadDecoder, cpInputs: cpInputs};
  post("streamlit:componentReady", {apiVersion: 1});
})();
