import numpy as np
import numpy.typing as npt

from lowlat._batch import MessageBatch

def read_l2_updates(batch: MessageBatch, sequence: npt.NDArray[np.uint64], side: npt.NDArray[np.int8],
                    price: npt.NDArray[np.float64], quantity: npt.NDArray[np.uint64],
                    order_count: npt.NDArray[np.uint32]) -> int: ...
