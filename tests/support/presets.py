"""A preset file a user would drop into the presets folder."""

USER_PRESET = """\
preset:
  params_billion: 7.6
  precision: bf16
  description: Qwen2.5 7B for the team
values:
  model: Qwen/Qwen2.5-7B-Instruct
  modelParameters:
    maxModelLen: 16384
    gpuMemoryUtilization: 0.85
  inference:
    serviceName: qwen25-7b
    accelerator: gpu
    framework: vllm
    modelServer:
      deployment:
        instanceType: g6e.xlarge
"""
