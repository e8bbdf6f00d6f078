"""The CLI's commands: `fit`, `play`, `render`, `evaluate_reward`, `dataset`."""
