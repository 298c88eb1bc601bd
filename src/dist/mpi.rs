//! Ranks that are MPI processes (`mpirun -np N lim pretrain ...`), through rsmpi with
//! MPI's built-in SUM and MAX. A rank that dies ends the job: MPI's default error handler
//! aborts every rank, and `mpirun` names the one that died.

use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};

use super::{Collective, Reduce};
use crate::error::{Error, Result};

/// MPI's world communicator; MPI is finalised when this is dropped.
pub struct Mpi {
    world: SimpleCommunicator,
    _universe: Universe,
}

impl Mpi {
    /// Initialises MPI, once per process.
    pub fn init() -> Result<Mpi> {
        let universe = mpi::initialize().ok_or_else(|| {
            Error::Collective("MPI is already initialised in this process".into())
        })?;
        Ok(Mpi {
            world: universe.world(),
            _universe: universe,
        })
    }

    /// Ends every rank of the job: what a rank does when it fails, since the others would
    /// otherwise wait for it in their next collective.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce(&self, values: &mut [f32], op: Reduce) -> Result<()> {
        let send = values.to_vec();
        let op = match op {
            Reduce::Sum => SystemOperation::sum(),
            Reduce::Max => SystemOperation::max(),
        };
        self.world.all_reduce_into(&send[..], values, op);
        Ok(())
    }

    fn broadcast(&self, values: &mut [f32], root: usize) -> Result<()> {
        self.world
            .process_at_rank(root as i32)
            .broadcast_into(values);
        Ok(())
    }
}
