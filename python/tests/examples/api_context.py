with CudaGPUController(rank=0, interval=0.5):
    dataset.process()
model.train_start()
