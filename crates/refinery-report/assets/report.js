(function () {
  "use strict";
  // Progressive enhancement only: the report reads the same with scripts off.
  function all() {
    return Array.prototype.slice.call(document.querySelectorAll("details"));
  }
  var controls = document.getElementById("controls");
  if (controls) {
    controls.hidden = false;
    document.getElementById("expand-all").addEventListener("click", function () {
      all().forEach(function (item) { item.open = true; });
    });
    document.getElementById("collapse-all").addEventListener("click", function () {
      all().forEach(function (item) { item.open = false; });
    });
  }
  // A printed report shows everything; what printing opened closes again afterwards.
  var openedForPrint = [];
  window.addEventListener("beforeprint", function () {
    openedForPrint = all().filter(function (item) { return !item.open; });
    openedForPrint.forEach(function (item) { item.open = true; });
  });
  window.addEventListener("afterprint", function () {
    openedForPrint.forEach(function (item) { item.open = false; });
    openedForPrint = [];
  });
  // Pointing at a criterion in the legend highlights its line in the chart.
  var chart = document.querySelector("svg.chart");
  if (!chart) {
    return;
  }
  var lines = Array.prototype.slice.call(chart.querySelectorAll("g.series"));
  Array.prototype.slice.call(document.querySelectorAll("[data-legend]")).forEach(function (item) {
    var id = item.getAttribute("data-legend");
    function on() {
      chart.classList.add("focus");
      lines.forEach(function (line) {
        line.classList.toggle("active", line.getAttribute("data-criterion") === id);
      });
    }
    function off() {
      chart.classList.remove("focus");
      lines.forEach(function (line) { line.classList.remove("active"); });
    }
    item.addEventListener("mouseenter", on);
    item.addEventListener("mouseleave", off);
    item.addEventListener("focus", on);
    item.addEventListener("blur", off);
  });
})();
