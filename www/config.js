export const DEFAULT_MODEL_URL = 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
