// Demo functions the page declares and answers itself, so tool calls can be tried without a backend.
// The same three exist in the terminal client (clients/demo_functions.py) with the same answers.

export const DEMO_FUNCTIONS = {
  get_weather: {
    declaration: {
      name: "get_weather",
      description: "Current weather in a city.",
      parameters: { type: "OBJECT", properties: { city: { type: "STRING" } }, required: ["city"] },
    },
    run: ({ city = "" } = {}) => {
      const conditions = ["sunny", "cloudy", "light rain", "windy"];
      let hash = 0;
      for (const ch of city.toLowerCase()) hash = (hash * 31 + ch.codePointAt(0)) % 1000;
      return { city, forecast: conditions[hash % conditions.length], temperature_c: 12 + (hash % 15) };
    },
  },
  turn_on_the_lights: {
    declaration: {
      name: "turn_on_the_lights",
      description: "Switch the lights on in a room.",
      parameters: { type: "OBJECT", properties: { room: { type: "STRING" } } },
    },
    run: ({ room = "living room" } = {}) => ({ result: "ok", room }),
  },
  get_time: {
    declaration: { name: "get_time", description: "The current date and time (ISO 8601, UTC)." },
    run: () => ({ utc: new Date().toISOString() }),
  },
};

/** The answer to one function call, in the `response` shape the protocol expects. */
export function answer(call) {
  const fn = DEMO_FUNCTIONS[call.name];
  if (!fn) return { error: `unknown function ${call.name}` };
  try {
    return fn.run(call.args || {});
  } catch (error) {
    return { error: String(error) };
  }
}
