// The minimal bundle has the API of plotly.js (typed by @types/plotly.js).
declare module "plotly.js-basic-dist-min" {
  import Plotly from "plotly.js";
  export default Plotly;
}
