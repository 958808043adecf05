// Live console charts. Finds every server-rendered chart (svg[data-key]), opens one
// EventSource to /console/live for all their series and redraws each line, its y scale and its
// last-value label as samples arrive. Pages are complete without it: the charts are drawn on
// the server, this only keeps them moving. Geometry and units come from the chart's data-*
// attributes (see webui/src/chart.rs); number formatting mirrors chart.rs.
(function () {
  "use strict";

  var MAX_KEYS = 64;

  if (!window.EventSource || !window.JSON || !document.querySelectorAll) {
    return;
  }
  var charts = Array.prototype.slice.call(document.querySelectorAll("svg[data-key]"));
  if (charts.length === 0) {
    return;
  }

  // key -> [[unix_ms, value], ...], oldest first.
  var series = {};
  var keys = [];
  var now = 0;
  charts.forEach(function (svg) {
    Array.prototype.forEach.call(svg.querySelectorAll("polyline[data-key]"), function (line) {
      var key = line.getAttribute("data-key");
      if (key && !Object.prototype.hasOwnProperty.call(series, key) && keys.length < MAX_KEYS) {
        series[key] = [];
        keys.push(key);
      }
    });
  });
  if (keys.length === 0) {
    return;
  }

  function num(svg, name, fallback) {
    var v = parseFloat(svg.getAttribute("data-" + name));
    return isFinite(v) ? v : fallback;
  }

  function number(v) {
    var a = Math.abs(v);
    var s = a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
    if (s.indexOf(".") >= 0) {
      s = s.replace(/0+$/, "").replace(/\.$/, "");
    }
    return s;
  }

  function scaled(v) {
    var prefixes = ["", "k", "M"];
    for (var i = 0; i < prefixes.length; i++) {
      if (Math.abs(v) < 1000) {
        return [number(v), prefixes[i]];
      }
      v /= 1000;
    }
    return [number(v), "G"];
  }

  function format(unit, v) {
    var s;
    switch (unit) {
      case "per_second":
        s = scaled(v);
        return s[0] + s[1] + " req/s";
      case "bytes":
        s = scaled(v);
        return s[0] + " " + s[1] + "B/s";
      case "seconds":
        var a = Math.abs(v);
        if (a >= 1) {
          return number(v) + " s";
        }
        if (a >= 1e-3 || a === 0) {
          return number(v * 1e3) + " ms";
        }
        return number(v * 1e6) + " \u00b5s";
      default:
        s = scaled(v);
        return s[0] + s[1];
    }
  }

  function niceCeil(v) {
    if (!(v > 0) || !isFinite(v)) {
      return 0;
    }
    var step = Math.pow(10, Math.floor(Math.log(v) / Math.LN10));
    var f = v / step;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * step;
  }

  function setText(svg, cls, text) {
    var el = svg.querySelector("." + cls);
    if (el) {
      el.textContent = text;
    }
  }

  function redraw(svg) {
    var unit = svg.getAttribute("data-unit") || "count";
    var win = num(svg, "window", 3600000);
    var x0 = num(svg, "x0", 0);
    var x1 = num(svg, "x1", 600);
    var y0 = num(svg, "y0", 0);
    var y1 = num(svg, "y1", 150);
    var lines = Array.prototype.slice.call(svg.querySelectorAll("polyline[data-key]"));
    var max = 0;
    var any = false;
    lines.forEach(function (line) {
      (series[line.getAttribute("data-key")] || []).forEach(function (p) {
        if (now - p[0] <= win) {
          any = true;
          max = Math.max(max, p[1]);
        }
      });
    });
    if (!any) {
      return;
    }
    var yMax = niceCeil(max) || (unit === "seconds" ? 1e-3 : 1);
    var labels = [];
    lines.forEach(function (line) {
      var pts = series[line.getAttribute("data-key")] || [];
      var out = [];
      pts.forEach(function (p) {
        var age = now - p[0];
        if (age < 0 || age > win) {
          return;
        }
        var x = x1 - (age / win) * (x1 - x0);
        var y = y1 - Math.min(Math.max(p[1] / yMax, 0), 1) * (y1 - y0);
        out.push(x.toFixed(1) + "," + y.toFixed(1));
      });
      line.setAttribute("points", out.join(" "));
      if (pts.length > 0) {
        var label = line.getAttribute("data-label");
        var value = format(unit, pts[pts.length - 1][1]);
        labels.push(label ? label + " " + value : value);
      }
    });
    var last = labels.join(" \u00b7 ");
    setText(svg, "chart-last", last);
    setText(svg, "chart-ymax", format(unit, yMax));
    var empty = svg.querySelector(".chart-empty");
    if (empty && empty.parentNode) {
      empty.parentNode.removeChild(empty);
    }
    var title = svg.querySelector("title");
    if (title) {
      svg.setAttribute("aria-label", title.textContent + ": " + last);
    }
  }

  function trim(points) {
    var oldest = now - num(charts[0], "window", 3600000);
    while (points.length > 0 && points[0][0] <= oldest) {
      points.shift();
    }
  }

  function redrawAll() {
    charts.forEach(redraw);
  }

  function parse(e) {
    try {
      return JSON.parse(e.data);
    } catch (_) {
      return null;
    }
  }

  var url = "/console/live?keys=" + keys.map(encodeURIComponent).join(",");
  // Without a session the server answers 401 and EventSource gives up by itself; the charts
  // keep what they show. After a network error it reconnects and gets the history again.
  var source = new EventSource(url);

  // On connect (and on every reconnect) the server sends the whole recent history.
  source.addEventListener("history", function (e) {
    var d = parse(e);
    if (!d || !d.series) {
      return;
    }
    now = Math.max(now, d.t || 0);
    keys.forEach(function (key) {
      var pts = d.series[key];
      if (Array.isArray(pts)) {
        series[key] = pts.filter(function (p) {
          return Array.isArray(p) && isFinite(p[0]) && isFinite(p[1]);
        });
        trim(series[key]);
      }
    });
    redrawAll();
  });

  source.addEventListener("sample", function (e) {
    var d = parse(e);
    if (!d || !d.points || !isFinite(d.t)) {
      return;
    }
    now = Math.max(now, d.t);
    keys.forEach(function (key) {
      var pts = series[key];
      var v = d.points[key];
      if (typeof v === "number" && isFinite(v)) {
        var lastT = pts.length > 0 ? pts[pts.length - 1][0] : -1;
        if (d.t > lastT) {
          pts.push([d.t, v]);
        }
      }
      trim(pts);
    });
    redrawAll();
  });
})();
