"""A class that loads a model once per container and serves predictions: PyTorch on
CPU from Debian's python3-torch package (no PyPI needed). The enter hook fits a small
linear model to y = 3x + 2 (it stands in for loading weights); every call after that
is inference only.

    gust run examples/python/model.py
"""
import gust

app = gust.App("torch-model")
image = gust.Image.debian_slim().apt_install("python3-torch")


@app.cls(image=image, memory=2048, cpu=1, timeout=300, snapshot=True)
class Model:
    @gust.enter(snap=True)
    def load(self):
        import torch
        torch.manual_seed(0)
        x = torch.linspace(-1, 1, 64).unsqueeze(1)
        y = 3 * x + 2
        self.net = torch.nn.Linear(1, 1)
        opt = torch.optim.SGD(self.net.parameters(), lr=0.1)
        for _ in range(500):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            loss.backward()
            opt.step()
        self.net.eval()
        self.torch_version = str(torch.__version__)  # a plain str: the caller has no torch

    @gust.method()
    def predict(self, xs):
        import torch
        with torch.no_grad():
            out = self.net(torch.tensor(xs, dtype=torch.float32).unsqueeze(1))
        return [round(v, 3) for v in out.squeeze(1).tolist()]

    @gust.method()
    def info(self):
        w, b = self.net.weight.item(), self.net.bias.item()
        return {"torch": self.torch_version, "weight": round(w, 3), "bias": round(b, 3)}


@app.local_entrypoint()
def main():
    model = Model()
    print("model:", model.info.remote())
    print("predict [0, 1, 2]:", model.predict.remote([0.0, 1.0, 2.0]))
