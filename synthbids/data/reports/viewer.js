/* synthbids participant report: the interactive viewer of each image (NiiVue, WebGL2).
 *
 * Every <div class="viewer"> names its data file (data-data, a .js file beside the report that
 * sets window.synthbidsViewer[data-key]) and the NiiVue bundle (data-bundle). Both are loaded
 * with plain <script> elements, which browsers allow for pages opened from disk (file://),
 * unlike fetch(). One viewer is open at a time (one WebGL context); the first opens by itself.
 * State for people and tests: data-state = closed | loading | ready | error | unsupported.
 */
(function () {
  'use strict';
  var FORMAT = 1;
  var scripts = {};
  var active = null;

  function loadScript(src) {
    if (!scripts[src]) {
      scripts[src] = new Promise(function (resolve, reject) {
        var el = document.createElement('script');
        el.src = src;
        el.onload = resolve;
        el.onerror = function () {
          delete scripts[src];
          el.remove();
          reject(new Error('cannot read ' + src));
        };
        document.head.appendChild(el);
      });
    }
    return scripts[src];
  }

  function hasWebGL2() {
    try {
      var gl = document.createElement('canvas').getContext('webgl2');
      if (!gl) return false;
      var lose = gl.getExtension('WEBGL_lose_context');
      if (lose) lose.loseContext();
      return true;
    } catch (err) {
      return false;
    }
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  function rgb(hex) {
    var n = parseInt(String(hex).replace('#', ''), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function bytes(b64) {
    var raw = atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }

  function amount(entry) {
    if (entry.volume === null || entry.volume === undefined) return '';
    var digits = entry.unit === 'mL' ? 1 : 0;
    var text = Number(entry.volume).toLocaleString('en-US', {
      minimumFractionDigits: digits, maximumFractionDigits: digits
    }).replace(/,/g, '\u2009');
    return text + ' ' + entry.unit;
  }

  // Default look of each layer: [shown, opacity] (the mask's: of its fill; its outline is opaque)
  var VOLUME_DEFAULTS = { mask: [true, 0.0], seg: [true, 0.5], head: [false, 0.5] };
  var MESH_DEFAULTS = {
    scalp: [true, 0.35], outerskull: [true, 1.0], innerskull: [false, 1.0], brain: [false, 1.0]
  };
  var VIEWS = [
    ['Axial', 'AXIAL'], ['Coronal', 'CORONAL'], ['Sagittal', 'SAGITTAL'],
    ['3 planes + 3-D', 'MULTIPLANAR'], ['3-D', 'RENDER']
  ];

  function labelLut(labels) {
    var lut = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: [''] };
    labels.forEach(function (entry) {
      var c = rgb(entry.color);
      lut.R.push(c[0]); lut.G.push(c[1]); lut.B.push(c[2]); lut.A.push(255);
      lut.I.push(entry.code); lut.labels.push(entry.name);
    });
    return lut;
  }

  function legend(volume) {
    var items = volume.labels.map(function (entry) {
      var swatch = el('span', { 'class': 'swatch', style: 'background:' + entry.color });
      var text = entry.name + (amount(entry) ? ' (' + amount(entry) + ')' : '');
      return el('li', {}, [swatch, document.createTextNode(text)]);
    });
    var list = el('ul', { 'class': 'viewer-legend' }, items);
    var summary = el('summary', { text: 'Legend: ' + volume.title + ' (' + items.length + ' labels)' });
    var details = el('details', { 'class': 'legend-' + volume.id }, [summary, list]);
    details.open = items.length <= 12;
    return details;
  }

  // A checkbox (shown or not) and, unless opacity is null, an opacity slider
  function layerRow(kind, item, shown, opacity, apply) {
    var box = el('input', { type: 'checkbox', 'data-layer': item.id, 'data-kind': kind });
    box.checked = shown;
    var parts = [box, document.createTextNode(' ' + item.title + ' ')];
    var range = null;
    if (opacity !== null) {
      range = el('input', {
        type: 'range', min: '0', max: '100', value: String(Math.round(opacity * 100)),
        'data-opacity': item.id, 'aria-label': 'opacity of ' + item.title
      });
      range.addEventListener('input', update);
      parts.push(range);
    }
    function update() { apply(box.checked, range ? Number(range.value) / 100 : 1); }
    box.addEventListener('change', update);
    return el('label', { 'class': 'layer' }, parts);
  }

  // The image's volume rendering in the 3-D view: hidden by a clip plane beyond the volume
  // (the meshes inside it then show); the 2-D views are not clipped
  function renderRow(nv, shown) {
    nv.setClipPlaneColor([0, 0, 0, 0]);
    function apply(on) { nv.setClipPlane(on ? [2, 0, 0] : [-1, 0, 0]); }
    apply(shown);
    return layerRow('render', { id: 'render', title: 'image in 3-D' }, shown, null, apply);
  }

  function describe(nv, data, shown, frac) {
    var mm = nv.frac2mm(frac);
    var parts = ['x=' + mm[0].toFixed(1) + ' y=' + mm[1].toFixed(1) + ' z=' + mm[2].toFixed(1) + ' mm'];
    nv.volumes.forEach(function (vol, i) {
      var info = data.volumes[i];
      var vox = vol.mm2vox([mm[0], mm[1], mm[2]]);
      var dims = vol.hdr.dims;
      if (vox[0] < 0 || vox[1] < 0 || vox[2] < 0 ||
          vox[0] >= dims[1] || vox[1] >= dims[2] || vox[2] >= dims[3]) return;
      var value = vol.getValue(vox[0], vox[1], vox[2]);
      if (!info.labels) {
        parts.push('intensity ' + Number(value).toPrecision(4));
        return;
      }
      if (!shown[i]) return;
      var entry = info.labels[Math.round(value) - 1];
      if (entry) parts.push(info.title + ': ' + entry.name + (amount(entry) ? ' (' + amount(entry) + ')' : ''));
    });
    return parts.join(' \u00b7 ');
  }

  async function build(container, data) {
    var nv = new niivue.Niivue({
      backColor: [0, 0, 0, 1],
      show3Dcrosshair: true,
      isOrientationTextVisible: true,
      showAllOrientationMarkers: true,
      isRadiologicalConvention: false,
      multiplanarShowRender: niivue.SHOW_RENDER.ALWAYS,
      meshThicknessOn2D: 1.0,
      dragAndDropEnabled: false,
      showLegend: false,
      isColorbar: false,
      logLevel: 'error',
      loadingText: ''
    });
    var canvas = el('canvas', {});
    var holder = el('div', { 'class': 'viewer-canvas' }, [canvas]);
    var status = el('p', { 'class': 'viewer-status', 'aria-live': 'polite', text: '' });
    var views = el('div', { 'class': 'viewer-views', role: 'group', 'aria-label': 'view' });
    var layers = el('div', { 'class': 'viewer-layers' });
    var legends = el('div', { 'class': 'viewer-legends' });
    var panel = el('div', { 'class': 'viewer-panel' }, [views, layers, holder, status, legends]);
    container.querySelector('.viewer-body').replaceChildren(panel);
    await nv.attachToCanvas(canvas);
    var shown = {};

    for (var i = 0; i < data.volumes.length; i++) {
      var info = data.volumes[i];
      var look = VOLUME_DEFAULTS[info.id] || [true, 1.0];
      var opacity = info.labels ? (look[0] ? look[1] : 0) : 1.0;
      var vol = await niivue.NVImage.loadFromBase64({
        base64: info.nifti, name: info.id + '.nii.gz', colormap: 'gray', opacity: opacity
      });
      if (info.labels) vol.setColormapLabel(labelLut(info.labels));
      nv.addVolume(vol);
      if (info.labels) {
        (function (index, outline) {
          shown[index] = look[0];
          layers.appendChild(layerRow('volume', info, look[0], look[1], function (on, value) {
            shown[index] = on;
            if (outline) nv.setAtlasOutline(on ? 1 : 0);  // only the mask is an outlined label
            nv.setOpacity(index, on ? value : 0);
          }));
          if (outline && look[0]) nv.setAtlasOutline(1);
        })(i, info.outline);
        if (info.id !== 'mask') legends.appendChild(legend(info));
      }
    }
    for (var j = 0; j < data.meshes.length; j++) {
      var m = data.meshes[j];
      var mlook = MESH_DEFAULTS[m.id] || [true, 1.0];
      var color = rgb(m.color).concat([255]);
      var mesh = await niivue.NVMesh.readMesh(
        bytes(m.mz3), m.id + '.mz3', nv.gl, mlook[1], new Uint8Array(color), mlook[0]
      );
      nv.addMesh(mesh);
      (function (meshId) {
        layers.appendChild(layerRow('mesh', m, mlook[0], mlook[1], function (on, value) {
          nv.setMeshProperty(meshId, 'visible', on);
          nv.setMeshProperty(meshId, 'opacity', Math.max(value, 0.01));
        }));
      })(mesh.id);
    }

    layers.appendChild(renderRow(nv, data.meshes.length === 0));

    VIEWS.forEach(function (view) {
      var button = el('button', { type: 'button', 'data-view': view[1], text: view[0] });
      button.addEventListener('click', function () {
        nv.setSliceType(niivue.SLICE_TYPE[view[1]]);
        views.querySelectorAll('button').forEach(function (b) {
          b.setAttribute('aria-pressed', String(b === button));
        });
      });
      button.setAttribute('aria-pressed', String(view[1] === 'MULTIPLANAR'));
      views.appendChild(button);
    });
    nv.setSliceType(niivue.SLICE_TYPE.MULTIPLANAR);

    var crosshair = '';
    nv.onLocationChange = function (loc) {
      crosshair = describe(nv, data, shown, loc.frac);
      status.textContent = crosshair;
    };
    canvas.addEventListener('mousemove', function (event) {
      var rect = canvas.getBoundingClientRect();
      var dpr = nv.uiData.dpr || 1;
      var frac = nv.canvasPos2frac([(event.clientX - rect.left) * dpr, (event.clientY - rect.top) * dpr]);
      if (frac[0] >= 0) status.textContent = describe(nv, data, shown, frac);
    });
    canvas.addEventListener('mouseleave', function () { status.textContent = crosshair; });
    nv.createOnLocationChange();
    nv.drawScene();
    return nv;
  }

  function close(current) {
    if (!current) return;
    try {
      if (current.nv) current.nv.cleanup();
      var lose = current.nv.gl && current.nv.gl.getExtension('WEBGL_lose_context');
      if (lose) lose.loseContext();
    } catch (err) { /* already gone */ }
    current.container.dataset.state = 'closed';
    current.container.niivue = null;
    current.container.querySelector('button.viewer-open').hidden = false;
    current.container.querySelector('.viewer-body').replaceChildren();
  }

  async function open(container) {
    if (active && active.container === container) return;
    var body = container.querySelector('.viewer-body');
    if (!hasWebGL2()) {
      container.dataset.state = 'unsupported';
      body.textContent = 'This browser has no WebGL2: the interactive viewer cannot run here. ' +
        'The figures above show the same results.';
      return;
    }
    close(active);
    var ticket = active = { container: container, nv: null };
    container.querySelector('button.viewer-open').hidden = true;
    container.dataset.state = 'loading';
    body.textContent = 'Loading the viewer\u2026';
    try {
      await loadScript(container.dataset.bundle);
      await loadScript(container.dataset.data);
      var data = (window.synthbidsViewer || {})[container.dataset.key];
      if (!data || data.format !== FORMAT) throw new Error('no viewer data for ' + container.dataset.key);
      if (active !== ticket) return;  // another viewer was opened meanwhile
      ticket.nv = await build(container, data);
      if (active !== ticket) {  // ... while this one was being built
        close(ticket);
        return;
      }
      container.niivue = ticket.nv;  // for the browser's console
      container.dataset.state = 'ready';
    } catch (err) {
      if (active !== ticket) return;
      container.dataset.state = 'error';
      body.textContent = 'The interactive viewer could not start (' + err.message + '). ' +
        'The figures above show the same results.';
      container.querySelector('button.viewer-open').hidden = false;
      active = null;
    }
  }

  function setUp() {
    var viewers = Array.prototype.slice.call(document.querySelectorAll('div.viewer'));
    viewers.forEach(function (container) {
      container.dataset.state = 'closed';
      var button = container.querySelector('button.viewer-open');
      button.hidden = false;
      button.addEventListener('click', function () { open(container); });
      container.querySelector('.viewer-body').replaceChildren();
    });
    if (viewers.length) open(viewers[0]);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', setUp);
  else setUp();
})();
